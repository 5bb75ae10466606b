"""learngene, scratch and judgement: individual networks that inherit a window of collective blocks (or not)."""

from __future__ import annotations

from learngene.core.artifact import Learngene
from learngene.core.convnet import ConvNet, scale_width
from learngene.core.individual import build_individual, individual_spec, inherited_parameters
from learngene.datamodules.target_tasks import TargetTask
from learngene.pipeline.context import RunContext
from learngene.pipeline.methods.common import TaskResult, init_seed, train_and_evaluate


def spec_for(ctx: RunContext, lg: Learngene):
    icfg, mult = ctx.cfg.individual, ctx.cfg.model.width_mult
    return individual_spec(
        lg, icfg.ways, hidden=[scale_width(h, mult) for h in icfg.hidden], base_width=scale_width(64, mult),
        lower_pools=icfg.lower_pools, pool_to=icfg.pool_to, input_size=ctx.cfg.data.image_size,
    )  # fmt: skip


def run_inherit(
    ctx: RunContext, lg: Learngene, tasks: list[TargetTask], inherit: bool, name: str
) -> tuple[list[TaskResult], dict]:
    """Train one individual network per task, inheriting ``lg``'s blocks when ``inherit`` (else scratch)."""
    spec, n_lower = spec_for(ctx, lg)

    def build(task: TargetTask) -> ConvNet:
        return build_individual(lg, spec, n_lower, init_seed(task), inherit=inherit)

    inherited = list(range(n_lower, len(spec.blocks))) if inherit else []
    results = train_and_evaluate(ctx, build, tasks, inherited, name)
    probe = ConvNet(spec)
    info = {
        "parameters": probe.num_parameters(),
        "inherited_parameters": inherited_parameters(probe, n_lower) if inherit else 0,
        "blocks": [b.name for b in spec.blocks],
        "inherited_blocks": lg.names if inherit else [],
    }
    return results, info
