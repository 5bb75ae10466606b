"""Data sources: each is a function that returns an :class:`~learngene_core.data.image_set.ImageSet`.

A data config names its source with ``_target_`` (see experiments/configs/data/); a new source is one
function plus one config file. Every source takes ``image_size`` and ``split`` (a split name of
:data:`~learngene_core.data.splits.SPLITS`, or a function of the class names) with ``split_file``.
"""
