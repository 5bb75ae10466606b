"""The stage-3 methods: a name -> :class:`Method` registry for discovery (label, role in the report), which the
pipeline, the config check and the report read. A method is *built* one way only, by ``instantiate`` from its
config node's ``_target_``: the result is a callable that plans the method's work for one (collective seed, shot
count), and its options arrive as arguments (the config check reads their types from the target's signature)::

    @register_method("my_method", label="my method (what it is)")
    def my_method(m: MethodContext, k: Positive, metric: Literal["euclidean", "cosine"]) -> list[Job]:
        return [Job(identity={"job": "my_method"}, compute=lambda tasks: ...)]

with one config file ``experiments/configs/methods/my_method.yaml``::

    my_method: {_target_: my_package.my_module.my_method, _partial_: true, k: 5, metric: euclidean}

selected with ``methods=[...,my_method]`` (a method with many options may be a dataclass with ``__call__(m)``, as
ProtoNet and MAML are). A :class:`Job` says what determines its numbers (``identity``: equal identities are
computed once, across collective seeds and reruns) and how to compute them (``compute(tasks) -> (per-task results,
info)``); the method's own config node is part of every job's identity without being written there
(``MethodContext.config_identity``, less the keys a method declares ``identity_excludes`` because each job's
identity already says what they change). Methods with several arms (the judgement: every window, inherited and
from scratch) return several jobs.

Two roles the report reads from here, so that it names no method itself: the one ``reference=True`` method is
what every other method's paired difference is taken against (scratch), and a multi-arm method names its own
report ``section`` (``"module:ATTR"`` of a :class:`~experiments.pipeline.report.sections.ReportSection`), which
builds, prints and plots its table instead of a row in the methods table.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from omegaconf import DictConfig, OmegaConf


def arm_name(inherited: bool, label: str) -> str:
    """The arm of a two-armed comparison (the judgement's windows, the descendants' shapes): ``inherit:<label>``
    for the network that inherits, ``scratch:<label>`` for the same network from scratch."""
    return f"{'inherit' if inherited else 'scratch'}:{label}"


def split_arm(arm: str) -> tuple[bool, str]:
    """``arm_name``'s inverse: (whether the arm inherits, its label)."""
    side, label = arm.split(":", 1)
    return side == "inherit", label


def hashed_identity(identity: dict) -> dict:
    """A job's identity as its keys hash it: the ``job`` entry under its first name, ``kind``, so that stage-3
    caches and run directories written before the rename stay valid."""
    return {("kind" if k == "job" else k): v for k, v in identity.items()}


@dataclass
class Job:
    identity: dict  # everything (besides the shared stage-3 settings) that determines the results
    compute: Callable[[list], tuple[list, dict]]  # tasks -> (per-task TaskResults, info such as parameters)
    arm: str | None = None  # e.g. "inherit:conv1-conv3" for one arm of a multi-arm method
    extra: dict = field(default_factory=dict)  # stored with the entry (e.g. the window)


@dataclass
class MethodContext:
    run: Any  # the RunContext
    collective_seed: int
    learngene: Any  # the Learngene of this collective seed
    shots: int
    # the method's resolved config (Method.config_identity), part of every job's identity
    config_identity: dict = field(default_factory=dict)

    def job_identity(self, identity: dict) -> dict:
        """A job's whole identity: what the job says determines its numbers, and the method's own config."""
        return {**identity, "method_config": self.config_identity}

    @cached_property
    def collective(self):
        """The collective network the learngene was taken from (loaded on first use)."""
        from experiments.pipeline import run_files

        net, _, _ = run_files.final_checkpoint(
            self.run.collective_dir(self.collective_seed), self.learngene.meta.get("collective_task")
        )
        return net


@dataclass(frozen=True)
class BaseClasses:
    """What the data offers meta-training: how many base classes, and the fewest training images one has."""

    count: int
    least_images: int
    least_name: str


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    target: (
        Callable  # what its config's _target_ names: built, it is called with a MethodContext -> list[Job]
    )
    validation: bool = (
        False  # its jobs also run on the held-out validation tasks (the report chooses among its arms)
    )
    reference: bool = False  # the paired differences of every other method are taken against this one
    section: str | None = None  # "module:ATTR" of its ReportSection (multi-arm methods); None: a table row
    # config keys left out of config_identity (each job's own identity says what they change)
    identity_excludes: tuple[str, ...] = ()
    # (key, its config node, the run's config, BaseClasses) -> None, reporting limits the data sets on its options
    data_limits: Callable[[str, DictConfig, DictConfig, BaseClasses], None] | None = None

    def config_identity(self, node: DictConfig | None) -> dict:
        """The method's resolved config node, less ``identity_excludes`` and Hydra's keys (``_target_``: a moved
        module keeps its results): part of every job's identity."""
        resolved = OmegaConf.to_container(node, resolve=True) if node is not None else {}
        return {
            k: v
            for k, v in (resolved or {}).items()
            if k not in self.identity_excludes and not k.startswith("_")
        }


METHODS: dict[str, Method] = {}


def register_method(
    name: str,
    label: str,
    validation: bool = False,
    reference: bool = False,
    section: str | None = None,
    identity_excludes: tuple[str, ...] = (),
    data_limits: Callable | None = None,
) -> Callable[[Callable], Callable]:
    """Registers the decorated function or class (the target its config names) under ``name``. Its options are
    its parameters (a dataclass's fields), typed like the suite's own schema (experiments/pipeline/schema.py:
    ``bool``, ``int``, ``float``, ``Literal`` or an ``Enum`` of choices, ``Optional``, ``Annotated[int,
    Range(ge=1)]``): other keys and bad values are refused before any work. ``validation``: its jobs also run on the held-out validation tasks (``target.validation``), where the
    report chooses among its arms before looking at the test tasks. ``reference``: the method every paired
    difference is taken against (one per registry). ``section``: ``"module:ATTR"`` of the method's own report
    section. ``identity_excludes``: config keys that are not part of every job's identity (a job's own identity
    says what they change for it, e.g. the descendants' shape list). ``data_limits(key, node, cfg, base)``: reports
    (``config_schema.fail``) what the data makes impossible for its options, before any work."""

    def deco(fn: Callable) -> Callable:
        other = next((m.name for m in METHODS.values() if m.reference and m.name != name), None)
        if reference and other:
            raise ValueError(f"method {name!r} is registered as the reference but {other!r} already is")
        METHODS[name] = Method(
            name,
            label,
            fn,
            validation,
            reference,
            section,
            identity_excludes,
            data_limits,
        )
        return fn

    return deco


def unregister_method(name: str) -> None:
    METHODS.pop(name, None)


def load_builtin() -> None:
    """Import every module of this package (each registers its methods)."""
    import experiments.methods as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("registry", "common"):
            importlib.import_module(f"experiments.methods.{info.name}")


def get_method(name: str) -> Method:
    load_builtin()
    if name not in METHODS:
        raise KeyError(f"method {name!r} is not registered; registered: {sorted(METHODS)}")
    return METHODS[name]


def method_names() -> list[str]:
    load_builtin()
    return list(METHODS)


def reference_method() -> str | None:
    """The registered reference method's name (scratch), or None."""
    load_builtin()
    return next((m.name for m in METHODS.values() if m.reference), None)
