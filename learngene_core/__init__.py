"""Learngene (AAAI 2022) reference implementation, the plain-torch core: backbones and their growth, the
criterion, the learngene artifact, individual networks, EWC, metrics, data. Nothing here imports Lightning.

Using a learngene from your own code: :mod:`learngene_core.api`.
"""

from learngene_core.api import (
    Learngene,
    build_descendant,
    build_individual_network,
    learngene_blocks,
    load_learngene,
)

__version__ = "0.2.0"
__all__ = ["Learngene", "build_descendant", "build_individual_network", "learngene_blocks", "load_learngene"]
