"""Build objects from config nodes (Hydra ``instantiate``), keeping the suite's one-line errors.

Hydra wraps whatever the target raises in an ``InstantiationException``; a :class:`LearngeneError` (a
missing data file, an impossible split) is unwrapped and raised as is, anything else becomes a
:class:`ConfigError` naming the node.
"""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from learngene_core.errors import ConfigError, LearngeneError


def build(node: Any, key: str, *args: Any, **kwargs: Any) -> Any:
    try:
        return instantiate(node, *args, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, LearngeneError):
            raise cause from None
        raise ConfigError(f"{key} cannot be built: {cause if cause is not None else err}") from None
