"""The learngene as a file of its own.

``learngene.pt`` holds the inherited blocks' state (weights and BatchNorm statistics), their backbone
kind, names, widths and pools, the collective network it came from (input size, widths, block names)
and a format tag; the JSON sidecar ``learngene.json`` (written by the pipeline) holds the criterion's
scores and provenance. :func:`load_learngene` checks the tag and the shapes and says what is wrong if
anything is. Version 1 files (written before backbones had kinds) are read as the VGG kind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from learngene_core.backbones.base import BlockNet, BlockSpec, load_state_checked, make_block
from learngene_core.errors import CheckpointError
from learngene_core.utils.io import atomic_torch_save, read_torch

FORMAT = "learngene-suite/learngene"
VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class Learngene:
    blocks: list[BlockSpec]  # the inherited window, in order
    state: list[dict[str, torch.Tensor]]  # per block: its state dict
    window_start: int  # index of the first inherited block in the collective network
    input_size: int  # the collective network's input size
    image_channels: int
    pools_before: int  # 2x2 pools the collective network applies before the window
    collective_widths: list[int] = field(default_factory=list)
    collective_block_names: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    kind: str = "vgg"  # the backbone kind of the blocks

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.blocks]

    @property
    def in_channels(self) -> int:
        return self.blocks[0].in_channels

    def num_parameters(self) -> int:
        return sum(p.numel() for b in self.blocks for p in make_block(self.kind, b).parameters())

    def content_digest(self) -> str:
        """Hash of what the learngene *is* (structure and tensors), not of its provenance.

        Stage 3 keys its cached results on this, so re-extracting the same window after a code
        commit (which changes ``meta``'s code version) does not throw finished results away.
        """
        h = hashlib.sha256()
        structure = [asdict(b) for b in self.blocks], self.window_start, self.input_size, self.image_channels
        if self.kind != "vgg":
            structure = (*structure, self.kind)
        h.update(
            json.dumps([structure, self.pools_before, self.meta.get("collective_task")], default=str).encode()
        )
        for st in self.state:
            for key in sorted(st):
                t = st[key].detach().cpu().contiguous()
                h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
                h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        return h.hexdigest()

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "blocks": [asdict(b) for b in self.blocks],
            "state": self.state,
            "window_start": self.window_start,
            "input_size": self.input_size,
            "image_channels": self.image_channels,
            "pools_before": self.pools_before,
            "collective_widths": self.collective_widths,
            "collective_block_names": self.collective_block_names,
            "meta": self.meta,
            "kind": self.kind,
        }


def extract_learngene(net: BlockNet, start: int, k: int, meta: dict | None = None) -> Learngene:
    """Copy blocks [start, start + k) of a collective network (weights and BatchNorm state)."""
    if not 0 <= start <= len(net.blocks) - k:
        raise ValueError(f"window start {start} with k={k} is outside the network's {len(net.blocks)} blocks")
    blocks = [net.blocks[i] for i in range(start, start + k)]
    state = [{key: v.detach().cpu().clone() for key, v in b.state_dict().items()} for b in blocks]
    return Learngene(
        blocks=[b.spec for b in blocks],
        state=state,
        window_start=start,
        input_size=net.input_size,
        image_channels=net.in_channels,
        pools_before=sum(b.pools for b in net.blocks[:start]),
        collective_widths=net.widths,
        collective_block_names=net.block_names,
        meta=dict(meta or {}),
        kind=net.kind,
    )


def save_learngene(learngene: Learngene, path: str | Path) -> Path:
    return atomic_torch_save(learngene.to_dict(), path)


def _check(learngene: Learngene, source: str) -> None:
    if len(learngene.blocks) != len(learngene.state) or not learngene.blocks:
        raise CheckpointError(
            f"{source}: {len(learngene.blocks)} block specs but {len(learngene.state)} block states"
        )
    prev_out = None
    for b, st in zip(learngene.blocks, learngene.state):
        try:
            block = make_block(learngene.kind, b)
        except ValueError as err:
            raise CheckpointError(f"{source}: {err}") from None
        try:
            load_state_checked(block, st, f"{source} block {b.name} ({b.in_channels}->{b.out_channels})")
        except CheckpointError as err:
            raise CheckpointError(f"{err}; the file is inconsistent") from None
        if prev_out is not None and b.in_channels != prev_out:
            raise CheckpointError(
                f"{source}: block {b.name} takes {b.in_channels} channels but the block before gives {prev_out}"
            )
        prev_out = b.out_channels


def load_learngene(
    path: str | Path, input_size: int | None = None, image_channels: int | None = None
) -> Learngene:
    """Load and check a learngene; ``input_size`` / ``image_channels``: what the individual model will use."""
    path = Path(path)
    d = read_torch(
        path,
        missing="the learngene file was not found: run the learngene stage (stage=[collective,learngene]) or "
        "point from_run at a finished run directory",
        damaged="it is not a readable learngene file: rerun the learngene stage",
    )
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a learngene of this suite (format tag {d.get('format') if isinstance(d, dict) else None!r}, expected {FORMAT!r})"
        )
    if d.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} has learngene format version {d.get('version')}; this suite reads versions "
            f"{list(READABLE_VERSIONS)}"
        )
    learngene = Learngene(
        blocks=[BlockSpec(**b) for b in d["blocks"]],
        state=d["state"],
        window_start=d["window_start"],
        input_size=d["input_size"],
        image_channels=d["image_channels"],
        pools_before=d["pools_before"],
        collective_widths=d.get("collective_widths", []),
        collective_block_names=d.get("collective_block_names", []),
        meta=d.get("meta", {}),
        kind=d.get("kind", "vgg"),
    )
    _check(learngene, str(path))
    if input_size is not None and input_size != learngene.input_size:
        raise CheckpointError(
            f"{path} was grown on {learngene.input_size} px inputs but the images here are {input_size} px; "
            f"use the same input size as the collective run (or retrain stage 1)"
        )
    if image_channels is not None and image_channels != learngene.image_channels:
        raise CheckpointError(
            f"{path} expects {learngene.image_channels}-channel images but the data has {image_channels}"
        )
    return learngene
