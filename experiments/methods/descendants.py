"""descendants: one learngene, descendants of many sizes, each judged against itself from scratch.

For every shape in ``methods.descendants.shapes`` (a width multiplier of the individual network and a depth,
see :mod:`learngene_core.descendants`) and every strategy of ``methods.descendants.strategies`` that applies
to it (a wider shape: every ``wider`` strategy, a deeper one: every ``deeper`` one that the backbone supports,
and both for a wider and deeper shape), two arms on the same target tasks:

- ``inherit:<shape>/<strategy>``: the descendant initialised from the learngene adapted by the strategy;
- ``scratch:<shape>``: the same descendant from scratch, with the same per-task init seeds, so their random
  lower blocks and heads start from the same numbers (as ``learngene`` and ``scratch``).

Equal computations are run once: the paper's shape is the ``learngene`` and ``scratch`` methods' network, and
strategies building the same network (deepen and repeat) share one scratch arm.
"""

from __future__ import annotations

import functools
import itertools
from typing import Annotated, Any

from experiments.methods.common import TaskResult, init_seed, train_and_evaluate
from experiments.methods.registry import Job, MethodContext, arm_name, register_method
from learngene_core.artifact import Learngene
from learngene_core.backbones.base import BlockNet, NetSpec
from learngene_core.descendants import (
    Adaptation,
    Shape,
    adapt,
    check_shape,
    check_shape_value,
    check_shapes_config,
    check_strategies_config,
    descendant_spec,
)
from learngene_core.descendants import directions as shape_directions
from learngene_core.errors import ConfigError
from learngene_core.individual import build_individual, inherited_parameters

KEY = "methods.descendants"


def strategies_of(strategies: dict) -> list[Adaptation]:
    for name, s in strategies.items():
        if not isinstance(s, Adaptation):
            raise ConfigError(f"{KEY}.strategies.{name}._target_ builds {type(s).__name__}, not an adaptation "
                              "strategy (a class registered with learngene_core.descendants.register_adaptation)")  # fmt: skip
    return list(strategies.values())


def combinations(learngene: Learngene, shape: Shape, strategies, base_width: int, key: str) -> list[list]:
    """Every applicable (width strategy, depth strategy) pair of one shape; refuses a shape none can build."""
    options = []
    for d in shape_directions(learngene, shape, base_width):
        if d is None:
            options.append([None])
            continue
        usable = [s for s in strategies if s.direction == d and s.refuse(learngene.kind) is None]
        if not usable:
            why = "; ".join(f"{s.name}: {s.refuse(learngene.kind)}" for s in strategies if s.direction == d)
            raise ConfigError(f"{KEY}.strategies: the shape {shape.name} ({key}) is {d} than the individual "
                              f"network but no {d} strategy can build it{' (' + why + ')' if why else ''}")  # fmt: skip
        options.append(usable)
    combos = [[s for s in c if s is not None] for c in itertools.product(*options)]
    for c in combos:
        check_shape(learngene, shape, c, base_width, key=key, strategy_key=f"{KEY}.strategies")
    return combos


def descendant_for(ctx, learngene: Learngene, shape: Shape, strategies) -> tuple[Learngene, NetSpec, int]:
    s = ctx.individual
    adapted = adapt(learngene, shape, strategies, s.base_width) if strategies else learngene
    spec, n_lower = descendant_spec(adapted, shape, s.ways, list(s.hidden), s.base_width, s.lower_pools, s.pool_to,
                                    s.input_size)  # fmt: skip
    return adapted, spec, n_lower


def run_descendant(ctx, adapted, spec, n_lower, tasks, inherit: bool = True) -> tuple[list[TaskResult], dict]:
    def build(task) -> BlockNet:
        return build_individual(adapted, spec, n_lower, init_seed(task), inherit=inherit)

    inherited = list(range(n_lower, len(spec.blocks))) if inherit else []
    results = train_and_evaluate(ctx, build, tasks, inherited, "descendants")
    probe = BlockNet(spec)
    return results, {
        "parameters": probe.num_parameters(),
        "inherited_parameters": inherited_parameters(probe, n_lower) if inherit else 0,
        "blocks": [b.name for b in spec.blocks],
        "widths": [b.out_channels for b in spec.blocks],
    }


@register_method(
    "descendants",
    "descendants (one learngene, many shapes; inherited and from scratch)",
    identity_excludes=(
        "shapes",
        "strategies",
    ),  # each arm's identity: its spec and adapted learngene's digest
    section="experiments.pipeline.report.descendants:SECTION",
)
def descendants(
    m: MethodContext,
    shapes: Annotated[Any, check_shapes_config],  # [{width, depth}, ...]
    strategies: Annotated[Any, check_strategies_config],  # name -> {_target_: <a registered adaptation>, ...}
) -> list[Job]:
    strategies = strategies_of(strategies)
    base = m.run.individual.base_width
    jobs = []
    for i, node in enumerate(shapes):
        key = f"{KEY}.shapes[{i}]"
        shape = check_shape_value(node.get("width", 1.0), node.get("depth"), key)
        for c, combo in enumerate(combinations(m.learngene, shape, strategies, base, key)):
            name = "+".join(s.name for s in combo) or "none"
            adapted, spec, n_lower = descendant_for(m.run, m.learngene, shape, combo)
            extra = {"shape": shape.name, "width": shape.width, "depth": shape.depth, "blocks": len(spec.blocks),
                     "order": i, "strategy": name}  # fmt: skip
            # one scratch arm per shape: the same descendant from scratch does not depend on the strategy
            arms = [(True, arm_name(True, f"{shape.name}/{name}"))] + (
                [(False, arm_name(False, shape.name))] if c == 0 else []
            )
            for inherit, arm in arms:
                identity = {"job": "individual", "spec": spec.to_dict(),
                            "inherit": adapted.content_digest() if inherit else None}  # fmt: skip
                run = functools.partial(run_descendant, m.run, adapted, spec, n_lower, inherit=inherit)
                jobs.append(Job(identity=identity, compute=run, arm=arm, extra={"descendant": extra}))
    return jobs
