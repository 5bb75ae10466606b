"""Check a composed config against its types: the schema's dataclasses (experiments/pipeline/schema.py) for the
plain nodes, each ``_target_``'s own signature for the nodes built from it (the stage-3 methods included).

One walker for both, so an extension's keys and values are checked exactly like the suite's own:

- an unknown key is refused with the closest valid one (``+collective.epochz=3``, ``+trainer.gradient_clip_vall``,
  ``methods.prototype.metrik``);
- a value is checked against its annotation: ``bool``, ``int``, ``float``, an ``Enum`` or ``Literal`` of choices,
  ``Optional[...]``, ``list[int]``, bounds from ``Annotated[..., Range(...)]``, or a check function in
  ``Annotated[..., fn]`` (``fn(key, value)`` raising ConfigError). Annotations it cannot read (``str | Path``, a
  class) are left to the target itself.

Every problem is collected (:func:`all_problems`) and reported in one ConfigError, one line each, naming the key, the
bad value and what is valid, e.g. ``collective.epochs=0: must be an integer >= 1``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

from experiments.pipeline.schema import Range, Run, Supplied
from learngene_core.errors import ConfigError

HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

_problems: list[tuple[str, str]] | None = (
    None  # while collecting: (key, message) of the problems found so far
)


def problem(key: str, message: str) -> None:
    """Report a problem: raised at once outside :func:`all_problems`, collected (one per key) inside it."""
    if _problems is None:
        raise ConfigError(message)
    if not any(k == key for k, _ in _problems):
        _problems.append((key, message))


def fail(key: str, value: Any, valid: str) -> None:
    problem(key, f"{key}={value!r}: {valid}")


@contextlib.contextmanager
def all_problems() -> Iterator[None]:
    """Run independent checks and report every problem they find in one ConfigError (one line each). An error a
    check raises because of an earlier bad value ends the collection early."""
    global _problems
    outer, _problems = _problems, []
    found = _problems
    try:
        yield
    except ConfigError as err:
        found.append(("", str(err)))
    except (TypeError, ValueError, AttributeError, KeyError):
        if not found:  # not a consequence of a problem already found
            raise
    finally:
        _problems = outer
    if found:
        raise one_error([m for _, m in found])


def one_error(messages: list[str]) -> ConfigError:
    """Problems as one ConfigError: a single line, or a count and one indented line each. The error keeps the
    list (``problems``), so that more can be added to it (:func:`problem_lines`)."""
    text = messages[0] if len(messages) == 1 else (
        f"{len(messages)} problems in the configuration:\n" + "\n".join(f"  {m}" for m in messages))  # fmt: skip
    err = ConfigError(text)
    err.problems = list(messages)
    return err


def problem_lines(err: ConfigError) -> list[str]:
    """The problems an error names: those :func:`one_error` gathered, or the error's one message."""
    return list(getattr(err, "problems", [str(err)]))


class MissingValue(ConfigError):
    """A key that is required but not set (``???``), or a value that interpolates one: named where it is set."""


def get(cfg: DictConfig, key: str, label: str | None = None) -> Any:
    """``cfg``'s value at ``key``, resolved; a missing mandatory value (:class:`MissingValue`) or a broken
    interpolation is a ConfigError naming ``label`` (default: ``key``)."""
    label = label or key
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise MissingValue(
            f"{label} is required but not set; pass {label}=VALUE on the command line"
        ) from None
    except InterpolationToMissingValueError as err:
        raise MissingValue(f"{label} cannot be resolved: {str(err).splitlines()[0]}") from None
    except Exception as err:  # interpolation errors
        raise ConfigError(f"{label} cannot be resolved: {str(err).splitlines()[0]}") from None


def suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, sorted(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# -- values against annotations -------------------------------------------------------------------------------


def _split(hint: Any) -> tuple[Any, list, bool]:
    """(the bare type, its Annotated metadata, whether null is valid)."""
    meta: list = []
    if typing.get_origin(hint) is typing.Annotated:
        hint, *meta = typing.get_args(hint)
    none_ok = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        none_ok = len(args) < len(typing.get_args(hint))
        literals = [a for a in args if typing.get_origin(a) is typing.Literal]
        if len(literals) == len(args) > 1:  # a union of Literals: one list of choices
            hint = typing.Literal[tuple(v for a in literals for v in typing.get_args(a))]
        elif len(args) == 1:
            hint, more, _ = _split(args[0])
            meta += more
        else:
            hint = Any  # str | Path and the like: the target checks it
    return hint, meta, none_ok


def _bounds(r: Range) -> str:
    parts = [f"{op} {v}" for op, v in ((">=", r.ge), (">", r.gt), ("<=", r.le), ("<", r.lt)) if v is not None]
    return " and ".join(parts)


def _out_of(r: Range, v: float) -> bool:
    return ((r.ge is not None and v < r.ge) or (r.gt is not None and v <= r.gt)
            or (r.le is not None and v > r.le) or (r.lt is not None and v >= r.lt))  # fmt: skip


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_value(key: str, value: Any, hint: Any) -> None:
    """One value against its annotation (see the module docstring); a problem is reported via :func:`fail`."""
    hint, meta, none_ok = _split(hint)
    r = next((m for m in meta if isinstance(m, Range)), Range())
    for fn in (m for m in meta if callable(m) and not isinstance(m, Range)):
        try:
            fn(key, value)
        except ConfigError as err:
            problem(key, str(err))
        return
    if value is None and none_ok:
        return
    null = " or null" if none_ok else ""
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            fail(key, value, "must be true or false")
    elif hint is int:
        if not _is_int(value) or _out_of(r, value):
            fail(key, value, f"must be an integer{' ' + _bounds(r) if _bounds(r) else ''}{null}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or _out_of(r, value):
            fail(key, value, f"must be a number{' ' + _bounds(r) if _bounds(r) else ''}{null}")
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        options = [m.value for m in hint]
        if value not in options:
            fail(key, value, f"valid values are {options}{null}")
    elif origin is typing.Literal:
        options = list(typing.get_args(hint))
        if value not in options:
            fail(key, value, f"valid values are {options}{null}")
    elif origin in (list, tuple, typing.Sequence) and typing.get_args(hint)[:1] == (int,):
        least, lo = r.min_len if r.min_len is not None else 0, r.ge
        if not isinstance(value, list | tuple | ListConfig) or len(value) < least:
            fail(
                key,
                value,
                f"must be a list of at least {least} integers{f' >= {lo}' if lo is not None else ''}",
            )
        elif any(not _is_int(x) or (lo is not None and x < lo) for x in value):
            fail(key, list(value), f"every entry must be an integer{f' >= {lo}' if lo is not None else ''}")


# -- nodes against a schema, a signature or a method's options --------------------------------------------------


def hints_of(obj: Any) -> dict[str, Any]:
    """The annotated parameters of a dataclass, function or class (empty where they cannot be read)."""
    try:
        target = obj.__init__ if inspect.isclass(obj) and not dataclasses.is_dataclass(obj) else obj
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # annotations naming what the module imports only for type checkers
        return {}
    hints.pop("return", None)
    return hints


def check_node(node: DictConfig, key: str, hints: dict[str, Any], unknown: Callable[[str, set], str],
               allowed: dict[str, set[str]] | None = None, supplied: dict[str, tuple] | None = None,
               target: bool = False) -> None:  # fmt: skip
    """Every key of ``node`` one of ``hints`` (a schema's fields or a signature's parameters, or of
    ``allowed[key]``), every value valid for its annotation;
    nested dataclass fields are checked the same way. ``supplied`` collects the call-time arguments of builder
    fields (``Annotated[Any, Supplied(...)]``). In a ``_target_`` node (``target``), a value that interpolates a
    missing one is left to that key (reported there, not twice); any other that does not resolve is named here."""
    own = (allowed or {}).get(key, set()) - set(hints)  # e.g. a data source's own keys: typed by the source
    names = set(hints) | own
    for k in node:
        # Hydra's own keys belong to _target_ nodes; in a plain node (a statistic's options) they would be ignored
        if k not in names and (k not in HYDRA_KEYS or not target):
            problem(f"{key}.{k}", unknown(str(k), names))
        elif k in own:  # set and resolvable (a missing data.path is named here, not where it is interpolated)
            try:
                get(node, str(k), label=f"{key}.{k}")
            except ConfigError as err:
                problem(f"{key}.{k}", str(err))
    for name, hint in hints.items():
        full = f"{key}.{name}" if key else name
        if name not in node.keys():  # noqa: SIM118 -- ``in`` is False for a missing mandatory value
            if (
                any(callable(m) for m in typing.get_args(hint)[1:])
                and typing.get_origin(hint) is typing.Annotated
            ):
                check_value(full, None, hint)  # a key with a check function is checked when absent too
            continue
        try:
            value = get(node, name, label=full)
        except ConfigError as err:
            if not target or not isinstance(err, MissingValue):  # a missing value is named where it is set
                problem(full, str(err))
            continue
        meta = typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ()
        for m in meta:
            if isinstance(m, Supplied) and supplied is not None:
                supplied[full] = m.names
        if dataclasses.is_dataclass(hint) and isinstance(value, DictConfig):
            check_node(value, full, hints_of(hint), _plain_unknown(full), allowed, supplied)
        else:  # in a _target_ node, a value taken from another key is named by that key (data.download)
            check_value((_interpolated_key(node, key, name) if target else None) or full, value, hint)


def _interpolated_key(node: DictConfig, key: str, name: str) -> str | None:
    """The key that ``key.name`` takes its value from (``${data.download}``: ``data.download``; in the node
    ``individual.datamodule``, ``${..batch_size}``: ``individual.batch_size``), else None."""
    if not OmegaConf.is_interpolation(node, name):
        return None
    raw = OmegaConf.to_container(node, resolve=False).get(name)
    match = re.fullmatch(r"\$\{(\.*)(\w[\w.]*)\}", str(raw))
    if not match:
        return None
    dots, ref = match.groups()
    parts = key.split(".")
    return ".".join([*parts[: len(parts) - len(dots) + 1], ref]) if dots else ref


def _plain_unknown(node: str) -> Callable[[str, set], str]:
    def message(k: str, names: set) -> str:
        return (f"{node + '.' if node else ''}{k} is not a key the suite reads, so it would be ignored"
                f"{suggest(k, names) or _elsewhere(node, k)} (keys of {node or 'the top level'}: {sorted(names)})")  # fmt: skip

    return message


# nodes split out of another one: a key given under the old node is pointed to its new node
SPLIT_FROM = {"individual": ("target", "individual_net")}


def _new_home(node: str, k: str) -> str | None:
    """The node split out of ``node`` that now holds key ``k`` (``individual``, ``shots``: ``target``)."""
    return next((n for n in SPLIT_FROM.get(node, ()) if k in hints_of(hints_of(Run)[n])), None)


def _elsewhere(node: str, k: str) -> str:
    home = _new_home(node, k)
    return f"; did you mean {home}.{k}?" if home else ""


def moved_override(overrides: list[str]) -> str | None:
    """The message for a command-line override of a key that moved to another node (``individual.ways=3``), which
    Hydra itself refuses only as "not in struct", without saying where the key is now; None if there is none."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        node, _, rest = key.partition(".")
        home = _new_home(node, rest.split(".")[0])
        if home:
            return (f"{key} is now {home}.{rest}: the {node} node was split (the target tasks under target, the "
                    f"individual network's shape under individual_net, stage 3's training under individual)")  # fmt: skip
    return None


def locate(path: str, key: str):
    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception as err:  # ImportError, AttributeError, ValueError
        raise ConfigError(
            f"{key}._target_={path!r} cannot be imported ({type(err).__name__}: {err}); name an importable "
            f"callable (module.function or module.Class)"
        ) from None


def check_target_node(node: DictConfig, key: str, supplied: tuple = ()) -> None:
    """A ``_target_`` node: the target imports, every key is one of its parameters (unless it takes ``**kwargs``),
    none of the ``supplied`` ones (its caller passes them), and every value fits the parameter's annotation."""
    target = str(node.get("_target_"))
    try:
        obj = locate(target, key)
        params = inspect.signature(obj).parameters
    except ConfigError as err:
        problem(f"{key}._target_", str(err))
        return
    except (TypeError, ValueError):
        return
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    first = next(iter(params.values()), None)
    if (
        node.get("_partial_")
        and first is not None
        and first.default is first.empty
        and first.name not in node
    ):
        names.discard(first.name)  # supplied at call time (a method's context, an optimizer's parameters)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        names |= {str(k) for k in node}
    names -= set(supplied)
    hints = hints_of(obj)

    def unknown(k: str, valid: set) -> str:
        if k in supplied:
            return (
                f"{key}.{k} is passed by the suite when it builds {key} (it would be overwritten); remove it"
            )
        return f"{key}.{k} is not a parameter of {target}{suggest(k, valid)}; valid: {sorted(valid)}"

    check_node(node, key, {n: hints.get(n, Any) for n in sorted(names)}, unknown, target=True)


def check_targets(node: Any, key: str = "", supplied: dict[str, tuple] | None = None) -> None:
    """Every ``_target_`` node under ``node`` (see :func:`check_target_node`); ``supplied``: key -> the arguments
    its caller passes."""
    supplied = supplied or {}
    if isinstance(node, DictConfig):
        if "_target_" in node:
            check_target_node(node, key, supplied.get(key, ()))
        for k in node:
            # a node that is another node (joint_phases: ${.continual}) is checked where that one is written
            if (
                k == "hydra"
                or OmegaConf.is_missing(node, k)
                or _interpolated_key(node, key, str(k)) is not None
            ):
                continue
            try:
                child = node[k]
            except Exception:  # unresolvable interpolation: reported by the value checks
                continue
            check_targets(child, f"{key}.{k}" if key else str(k), supplied)
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            if isinstance(item, DictConfig | ListConfig):
                check_targets(item, f"{key}[{i}]", supplied)


def data_keys(cfg: DictConfig) -> set[str]:
    """A data source's own keys: the ``data.<key>`` its node interpolates, or (in a resolved config, where the
    interpolation is gone) a parameter of the source that its node sets to the same value."""
    source, data = OmegaConf.select(cfg, "data.source"), OmegaConf.select(cfg, "data")
    if not isinstance(source, DictConfig):
        return set()
    keys: set[str] = set()
    for raw in OmegaConf.to_container(source, resolve=False).values():
        if isinstance(raw, str):
            keys |= {part.split("}")[0].split(".")[0] for part in raw.split("${data.")[1:]}
    with contextlib.suppress(Exception):
        params = inspect.signature(locate(str(source.get("_target_")), "data.source")).parameters
        keys |= {k for k in params if k in source and k in data and source[k] == data[k]}
    return keys


def check_methods(cfg: DictConfig) -> None:
    """Each selected method registered, and built from a ``_target_`` (its options: :func:`check_targets`)."""
    from experiments.methods.registry import get_method, method_names

    registered = method_names()
    for m, node in (get(cfg, "methods") or {}).items():
        if m not in registered:
            fail(
                "methods",
                list(get(cfg, "methods")),
                f"{m!r} is not a registered method; registered: {registered}",
            )
        elif not isinstance(node, DictConfig) or "_target_" not in node:
            target = get_method(m).target
            fail(f"methods.{m}", node, f"needs _target_ (the method's function or class, e.g. "
                 f"{{_target_: {target.__module__}.{target.__qualname__}, _partial_: true}})")  # fmt: skip


def check_typed(cfg: DictConfig) -> None:
    """The whole config against the schema and every ``_target_``'s signature, methods included (problems
    collected by the caller's :func:`all_problems`)."""
    supplied: dict[str, tuple] = {}
    check_node(cfg, "", hints_of(Run), _plain_unknown(""), {"data": data_keys(cfg)}, supplied)
    check_targets(cfg, supplied=supplied)
    check_methods(cfg)
