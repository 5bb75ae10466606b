"""What stage 3 takes from the config, read in one place: the methods and their helpers receive these values
(``ctx.individual``), never a config node."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig

from experiments.pipeline.objects import build
from learngene_core.growth import scale_width


@dataclass(frozen=True)
class IndividualSettings:
    seed: int  # the run's seed (meta-learners' initialisation and episodes)
    ways: int
    hidden: tuple[int, ...]  # the head's hidden widths, scaled by model.width_mult
    base_width: int  # the lower blocks' width, scaled by model.width_mult
    lower_pools: str
    pool_to: int
    input_size: int
    epochs: int
    batched: bool
    task_batch: int | None
    inherited_lr: float | None
    freeze_inherited: bool
    channels_last: bool
    compile: bool
    on_device: bool
    module: Callable  # partial IndividualModule: (net, optimizer, ...) -> LightningModule
    optimizer: Callable  # partial optimizer: params -> Optimizer
    datamodule: Callable  # partial TargetTasksDataModule: (image_set, tasks, augment, seeds) -> DataModule

    @classmethod
    def from_config(cls, cfg: DictConfig) -> IndividualSettings:
        i, net, mult = cfg.individual, cfg.individual_net, cfg.model.width_mult
        return cls(
            seed=int(cfg.seed), ways=int(cfg.target.ways), hidden=tuple(scale_width(h, mult) for h in net.hidden),
            base_width=scale_width(net.base_width, mult), lower_pools=str(net.lower_pools), pool_to=int(net.pool_to),
            input_size=int(cfg.data.image_size), epochs=int(i.epochs), batched=bool(i.batched),
            task_batch=i.task_batch, inherited_lr=i.inherited_lr, freeze_inherited=bool(i.freeze_inherited),
            channels_last=bool(cfg.compute.channels_last), compile=bool(cfg.compute.compile),
            on_device=bool(cfg.data.on_device), module=build(i.module, "individual.module"),
            optimizer=build(i.optimizer, "individual.optimizer"),
            datamodule=build(i.datamodule, "individual.datamodule"),
        )  # fmt: skip
