"""Whether this CPU computes bf16 natively, so that ``trainer=cpu_fast`` is fast rather than emulated.

On x86, oneDNN's own answer (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) is not enough: it also says yes on
AVX-512 CPUs without the bf16 instructions (Skylake-SP, Cascade Lake, Ice Lake), where oneDNN emulates bf16 and
``trainer=cpu_fast`` trains at half of fp32's speed (0.48x, ``benchmarks/cpu_precision.py --emulated-bf16`` with
oneDNN capped at ``AVX512_CORE``; docs/benchmarks.md). Native there means both: the CPU has AVX512-BF16 or AMX
(torch's cpuinfo probes, or the kernel's CPU flags on a torch without them), and oneDNN is not capped below
those instructions by ``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA``. On other architectures (ARM's BF16
extension) oneDNN's answer is the CPU's own flag and is used as it is.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# oneDNN reads the first of these that is set and not empty; a value it does not know is ignored (no cap)
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# the caps (case-insensitive) under which oneDNN has no bf16 instructions and emulates them
_CAPS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def bf16_blocking_cap() -> str | None:
    """``VARIABLE=VALUE`` when the environment caps oneDNN below its bf16 instructions, else None."""
    for variable in ISA_CAP_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return f"{variable}={value}" if value.upper() in _CAPS_WITHOUT_BF16 else None
    return None


def _x86_has_bf16_instructions() -> bool:
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these probes: the kernel's CPU flags
        try:
            flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:
            return False  # cannot tell: refuse rather than risk emulation
        return bool(flags & {"avx512_bf16", "amx_bf16"})


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def why_not_native() -> str:
    """Why bf16 is not native here, for the refusal: the missing instructions, or the cap that hides them."""
    cap = bf16_blocking_cap()
    if _is_x86() and cap and _x86_has_bf16_instructions():
        return f"oneDNN is capped below this CPU's bf16 instructions ({cap})"
    return "this CPU has no native bf16 (AVX512-BF16 or AMX)"


def cpu_has_bf16() -> bool:
    """True where bf16 convolutions and matrix products run on the CPU's own bf16 instructions."""
    if _is_x86():
        return _x86_has_bf16_instructions() and bf16_blocking_cap() is None
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
