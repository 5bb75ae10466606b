"""The experiment a command line runs when it names none: the offline quickstart (exp/quickstart.yaml).

``python experiments/run.py`` and the tests' ``compose`` both pass their arguments through
:func:`prepare_command_line` (a key that moved is refused with where it is now, then the default experiment is
added), so the two compose the same config. The quickstart's settings (3-class tasks,
3-way target tasks, a 10x learning rate) are for its digits data, so it is added only when the data is the
default one: ``python experiments/run.py data=npz data.path=...`` runs run.yaml's own settings, as an experiment
file would. An experiment is named by ``+exp=NAME``, ``+exp=[A,B]`` or ``exp=...``; a command line that
composes another primary config (``--config-path``/``-cp``, or ``--config-name``/``-cn`` other than ``run``, as
when re-running a saved ``.hydra/config.yaml``) is left alone.
"""

from __future__ import annotations

import re

DEFAULT_EXPERIMENT = "quickstart"
_NAMES_AN_EXPERIMENT = re.compile(r"^\+{0,2}exp(@[^=]*)?=")
_OTHER_DATA = re.compile(r"^\+{0,2}data=(?!digits$)")


def _is_override(arg: str) -> bool:
    return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))


def _other_primary_config(args: list[str]) -> bool:
    for i, a in enumerate(args):
        if a in ("-cp", "--config-path") or a.startswith("--config-path="):
            return True
        name = args[i + 1] if a in ("-cn", "--config-name") and i + 1 < len(args) else None
        name = a.split("=", 1)[1] if a.startswith("--config-name=") else name
        if name is not None and name not in ("run", "run.yaml"):
            return True
    return False


def with_default_experiment(args: list[str]) -> list[str]:
    """``args`` (Hydra overrides, or a whole command line with flags such as ``-m`` or ``--cfg job``) with
    ``+exp=quickstart`` added when they name no experiment and no other data. It goes next to the other overrides
    (Hydra's command line takes them as one run of positional arguments: ``-m +exp=quickstart k=v``), or first when
    there are none (``+exp=quickstart --info``)."""
    named = any(_NAMES_AN_EXPERIMENT.match(a) or _OTHER_DATA.match(a) for a in args)
    if named or _other_primary_config(args):
        return list(args)
    at = next((i for i, a in enumerate(args) if _is_override(a)), 0)
    return [*args[:at], f"+exp={DEFAULT_EXPERIMENT}", *args[at:]]


def prepare_command_line(args: list[str]) -> list[str]:
    """A command line as Hydra should compose it: a key of a node that was split is refused with where it is now
    (a :class:`ConfigError`; Hydra itself would say only "not in struct"), then the default experiment is added."""
    from experiments.pipeline.config_schema import moved_override
    from learngene_core.errors import ConfigError

    moved = moved_override(args)
    if moved:
        raise ConfigError(moved)
    return with_default_experiment(args)
