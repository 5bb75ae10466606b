"""OmegaConf resolvers the configs use (registered by experiments/run.py before Hydra composes)."""

from __future__ import annotations

from omegaconf import OmegaConf


def first_set(*values):
    """The first value that is not null (``${first_set:${paths.output_dir},default}``)."""
    return next((v for v in values if v is not None and v != "None"), None)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("first_set"):
        OmegaConf.register_new_resolver("first_set", first_set)
