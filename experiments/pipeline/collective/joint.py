"""The joint ancestor's one optimizer and LR schedule (``collective.mode=joint``), kept across its tasks.

Every task (chunk) has a Trainer of its own, but they all step the same optimizer and scheduler, so the
run is one optimisation: momentum carries over and the schedule runs over the whole run's steps. Their
state goes into every checkpoint, so a resumed run continues exactly. With ``collective.joint_growth=true``
the network widens between chunks: the optimizer is then rebuilt over the new parameters, keeping the
state of every parameter whose name and shape did not change (a widened tensor restarts its momentum),
and the schedule continues at the same step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from learngene_core.errors import CheckpointError


class RunOptimizer:
    def __init__(
        self, optimizer: Callable, schedule: Callable | None, net: torch.nn.Module, total_steps: int
    ) -> None:
        """``optimizer``: params -> Optimizer; ``schedule``: (optimizer, total_steps) -> scheduler, or None."""
        self.factory = optimizer
        self.schedule = schedule
        self.total_steps = int(total_steps)
        self._build(net)

    def _build(self, net: torch.nn.Module) -> None:
        self.names = [n for n, _ in net.named_parameters()]
        self.shapes = {n: tuple(q.shape) for n, q in net.named_parameters()}
        self.optimizer = self.factory(net.parameters())
        self.scheduler = self.schedule(self.optimizer, self.total_steps) if self.schedule else None

    # -- handed to each task's module ---------------------------------------------------------------
    def as_factory(self):
        return lambda params: self.optimizer

    def as_schedule(self):
        return (lambda optimizer, total_steps: self.scheduler) if self.scheduler is not None else None

    # -- growth -------------------------------------------------------------------------------------
    def rebuild(self, net: torch.nn.Module) -> None:
        """After the network grew: a new optimizer over its parameters, carrying every unchanged
        parameter's state, the param groups' lr and the scheduler's position."""
        old_opt, old_sched, old_shapes = self.optimizer, self.scheduler, self.shapes
        old_params = (
            dict(zip(self.names, old_opt.param_groups[0]["params"])) if len(old_opt.param_groups) == 1 else {}
        )
        groups = [{k: v for k, v in g.items() if k != "params"} for g in old_opt.param_groups]
        sched_state = old_sched.state_dict() if old_sched is not None else None
        self._build(net)
        for name, p in net.named_parameters():
            old = old_params.get(name)
            if old is not None and old_shapes[name] == tuple(p.shape) and old in old_opt.state:
                self.optimizer.state[p] = {
                    k: v.clone() if torch.is_tensor(v) else v for k, v in old_opt.state[old].items()
                }
        for g, old in zip(self.optimizer.param_groups, groups):
            g.update(old)
        if self.scheduler is not None and sched_state is not None:
            self.scheduler.load_state_dict(sched_state)

    # -- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict | None, source: str) -> None:
        if not state or "optimizer" not in state:
            raise CheckpointError(
                f"{source} holds no optimizer state, which a joint collective run needs to resume exactly; "
                f"rerun stage 1 in a new output directory"
            )
        if state.get("total_steps") != self.total_steps:
            raise CheckpointError(
                f"{source}: its schedule ran over {state.get('total_steps')} steps, this run has {self.total_steps}"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
