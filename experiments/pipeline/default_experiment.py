"""The experiment a command line runs when it names none: the offline quickstart (exp/quickstart.yaml).

``python experiments/run.py`` and the tests' ``compose`` both pass their overrides through
:func:`with_default_experiment`, so the two compose the same config. An experiment is named by ``+exp=NAME``,
``+exp=[A,B]`` or ``exp=...``; removing it (``~exp``) counts as naming one.
"""

from __future__ import annotations

import re

DEFAULT_EXPERIMENT = "quickstart"
_NAMES_AN_EXPERIMENT = re.compile(r"^[+~]{0,2}exp(@[^=]*)?(=|$)")


def _is_override(arg: str) -> bool:
    return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))


def with_default_experiment(args: list[str]) -> list[str]:
    """``args`` (Hydra overrides, or a whole command line with flags such as ``-m`` or ``--cfg job``) with
    ``+exp=quickstart`` added when none of them names an experiment. It goes next to the other overrides, since
    Hydra's command line takes them as one run of positional arguments (``-m +exp=quickstart k=v``)."""
    if any(_NAMES_AN_EXPERIMENT.match(a) for a in args):
        return list(args)
    at = next((i for i, a in enumerate(args) if _is_override(a)), len(args))
    return [*args[:at], f"+exp={DEFAULT_EXPERIMENT}", *args[at:]]
