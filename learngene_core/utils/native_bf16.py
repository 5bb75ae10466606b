"""Whether this CPU computes bf16 natively, so that ``trainer=cpu_fast`` is fast rather than emulated.

oneDNN's own answer (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) is not enough: it also says yes on AVX-512
CPUs without the bf16 instructions (Skylake-SP, Cascade Lake, Ice Lake), where oneDNN emulates bf16 and
``trainer=cpu_fast`` trains at half of fp32's speed (0.48x, ``benchmarks/cpu_precision.py --emulated-bf16``
with oneDNN capped at ``AVX512_CORE``; docs/benchmarks.md). Native means both: the CPU has AVX512-BF16 or AMX (cpuinfo, as torch reads it), and oneDNN is
not capped below them by ``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA``.
"""

from __future__ import annotations

import os

# oneDNN's ISA caps (ONEDNN_MAX_CPU_ISA values) under which it has no bf16 instructions and emulates them
_CAPS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def onednn_isa_cap() -> str | None:
    """The ISA cap set for oneDNN in the environment (upper case), or None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap else None


def cpu_has_bf16() -> bool:
    """True where bf16 convolutions and matrix products run on the CPU's own bf16 instructions."""
    import torch

    try:
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    except (AttributeError, RuntimeError):  # a torch without these probes: do not guess
        return False
    return bool(native) and onednn_isa_cap() not in _CAPS_WITHOUT_BF16
