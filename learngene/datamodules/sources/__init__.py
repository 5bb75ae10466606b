"""Data sources. Each ``load_*`` returns an :class:`~learngene.datamodules.image_set.ImageSet`."""

from learngene.datamodules.sources.registry import SOURCES, load_image_set

__all__ = ["SOURCES", "load_image_set"]
