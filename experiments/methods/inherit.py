"""learngene, scratch and judgement: individual networks that inherit a window of collective blocks (or not).

- ``learngene``: the selected window inherited into the individual network;
- ``scratch``: the same network, nothing inherited, the same per-task seeds (so its random layers start
  from the same numbers as learngene's);
- ``judgement``: every window of k consecutive collective blocks, each inherited *and* each window's
  own network from scratch, so that every window gets a paired gain (inherited minus scratch on the same
  tasks and seeds). Windows build networks of different sizes; accuracy alone would mix inheritance
  with architecture. Equal computations (the selected window = learngene, its scratch = scratch, every
  scratch network across collective seeds) are run once.
"""

from __future__ import annotations

from experiments.methods.common import TaskResult, init_seed, train_and_evaluate
from experiments.methods.registry import Job, MethodContext, arm_name, register_method
from learngene_core.artifact import Learngene, extract_learngene
from learngene_core.backbones.base import BlockNet, NetSpec
from learngene_core.individual import build_individual, individual_spec, inherited_parameters


def spec_for(ctx, learngene: Learngene) -> tuple[NetSpec, int]:
    s = ctx.individual
    return individual_spec(
        learngene, s.ways, list(s.hidden), s.base_width, s.lower_pools, s.pool_to, s.input_size
    )


def run_inherit(ctx, learngene: Learngene, tasks, inherit: bool, name: str) -> tuple[list[TaskResult], dict]:
    """Train one individual network per task, inheriting ``learngene``'s blocks when ``inherit`` (else scratch)."""
    spec, n_lower = spec_for(ctx, learngene)

    def build(task) -> BlockNet:
        return build_individual(learngene, spec, n_lower, init_seed(task), inherit=inherit)

    inherited = list(range(n_lower, len(spec.blocks))) if inherit else []
    results = train_and_evaluate(ctx, build, tasks, inherited, name)
    probe = BlockNet(spec)
    info = {
        "parameters": probe.num_parameters(),
        "inherited_parameters": inherited_parameters(probe, n_lower) if inherit else 0,
        "blocks": [b.name for b in spec.blocks],
        "inherited_blocks": learngene.names if inherit else [],
    }
    return results, info


def inherit_job(m: MethodContext, learngene: Learngene, inherit: bool, name: str, **extra) -> Job:
    spec, _ = spec_for(m.run, learngene)
    identity = {
        "job": "individual",
        "spec": spec.to_dict(),
        "inherit": learngene.content_digest() if inherit else None,
    }
    return Job(
        identity=identity, compute=lambda tasks: run_inherit(m.run, learngene, tasks, inherit, name), **extra
    )


@register_method("learngene", "learngene (inherit selected blocks)")
def learngene(m: MethodContext) -> list[Job]:
    return [inherit_job(m, m.learngene, True, "learngene")]


@register_method("scratch", "scratch (same network, random init)", reference=True)
def scratch(m: MethodContext) -> list[Job]:
    return [inherit_job(m, m.learngene, False, "scratch")]


@register_method(
    "judgement",
    "judgement (every window, inherited and from scratch)",
    validation=True,
    section="experiments.pipeline.report.judgement:SECTION",
)
def judgement(m: MethodContext) -> list[Job]:
    net, k = m.collective, len(m.learngene.blocks)
    jobs = []
    for start in range(len(net.blocks) - k + 1):
        learngene = extract_learngene(
            net, start, k, meta={"collective_task": m.learngene.meta.get("collective_task")}
        )
        label = f"{net.block_names[start]}-{net.block_names[start + k - 1]}"
        window = {"window": {"start": start, "blocks": net.block_names[start : start + k], "label": label}}
        for inherit in (True, False):
            arm = arm_name(inherit, label)
            jobs.append(inherit_job(m, learngene, inherit, "judgement", arm=arm, extra=window))
    return jobs
