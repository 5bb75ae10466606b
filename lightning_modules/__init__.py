"""LightningModules: thin wrappers that train the plain-torch networks of learngene_core."""

from collections.abc import Callable

import torch

# what the configs build with ``_partial_: true``: called with parameters (or parameter groups)
OptimizerFactory = Callable[..., torch.optim.Optimizer]
