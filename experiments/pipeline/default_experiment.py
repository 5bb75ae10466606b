"""The experiment a command line runs when it names none: the offline quickstart (exp/quickstart.yaml).

``python experiments/run.py`` and the tests' ``compose`` both pass their overrides through
:func:`with_default_experiment`, so the two compose the same config. An experiment is named by ``+exp=NAME``,
``+exp=[A,B]`` or ``exp=...``; removing it (``~exp``) counts as naming one.
"""

from __future__ import annotations

import re

DEFAULT_EXPERIMENT = "quickstart"
_NAMES_AN_EXPERIMENT = re.compile(r"^[+~]{0,2}exp(@[^=]*)?(=|$)")


def with_default_experiment(overrides: list[str]) -> list[str]:
    """``+exp=quickstart`` and ``overrides`` when none of them names an experiment (first: Hydra's command line
    takes its overrides before flags such as ``--cfg job``)."""
    if any(_NAMES_AN_EXPERIMENT.match(o) for o in overrides):
        return list(overrides)
    return [f"+exp={DEFAULT_EXPERIMENT}", *overrides]
