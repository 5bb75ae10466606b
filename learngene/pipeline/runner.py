"""Run the selected stages in order for one resolved config."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from learngene.errors import ConfigError, LearngeneError
from learngene.pipeline.config_check import check_config
from learngene.pipeline.context import RunContext
from learngene.utils import dist

log = logging.getLogger("learngene")


def check_against_data(ctx: RunContext) -> list[str]:
    """Checks that need the data (ways vs classes, shots vs images); returns a summary of the protocol."""
    from learngene.pipeline.collective_stage import make_stream
    from learngene.pipeline.individual_stage import target_tasks

    cfg, image_set = ctx.cfg, ctx.image_set
    lines = []
    if image_set.image_size != cfg.data.image_size:
        raise ConfigError(
            f"data.image_size={cfg.data.image_size} but the source produced {image_set.image_size} px images"
        )
    stream = make_stream(cfg, image_set)
    shown = ", ".join(str(list(t.classes)) for t in stream[:4])
    lines.append(f"collective stream: {len(stream)} tasks of {cfg.collective.classes_per_task} classes: {shown}"
                 f"{' ...' if len(stream) > 4 else ''}")  # fmt: skip
    if cfg.collective.train_per_class is not None:
        per_class = min(
            len(v)
            for c, v in image_set.indices_by_class("train").items()
            if c in set(image_set.groups["base"])
        )
        if cfg.collective.train_per_class > per_class:
            raise ConfigError(f"collective.train_per_class={cfg.collective.train_per_class} but a base class has only "
                              f"{per_class} training images; use at most {per_class} or null")  # fmt: skip
    for shots in cfg.individual.shots:
        tasks = target_tasks(ctx, shots)
        lines.append(f"target tasks, {shots}-shot: {len(tasks)} ({cfg.individual.n_tasks} per seed x seeds "
                     f"{list(cfg.individual.seeds)}), e.g. classes {[list(t.classes) for t in tasks[:3]]}")  # fmt: skip
    base = len(image_set.groups["base"])
    methods = set(cfg.baselines.methods)
    if "protonet" in methods and cfg.baselines.protonet.ways > base:
        raise ConfigError(
            f"baselines.protonet.ways={cfg.baselines.protonet.ways} but there are {base} base classes"
        )
    if "maml" in methods and cfg.individual.ways > base:
        raise ConfigError(
            f"MAML meta-trains {cfg.individual.ways}-way episodes but there are {base} base classes"
        )
    return lines


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def make_loggers(cfg: DictConfig, out: Path) -> list:
    kind = cfg.logger.kind
    if kind == "none" or not dist.is_rank_zero():
        return []
    if kind == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return [CSVLogger(save_dir=str(out), name="logs")]  # logs/version_N: a resumed run keeps earlier logs
    from learngene.pipeline.wandb_logging import make_wandb_logger

    return [make_wandb_logger(cfg, out)]


def quiet_libraries() -> None:
    """One Trainer per task would repeat Lightning's start-up banner and hints dozens of times."""
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*LeafSpec.*", ".*smaller than the logging interval.*", ".*does not have many workers.*",
                    ".*litlogger.*", ".*GPU available but not used.*"):  # fmt: skip
        warnings.filterwarnings("ignore", message=pattern)


def run_pipeline(cfg: DictConfig, output_dir: str | Path) -> dict | None:
    """Check the config, then run ``cfg.stage`` in order; returns the results dict if the report ran."""
    check_config(cfg)
    quiet_libraries()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # under torchrun / srun, join the process group up front: stages other than a DDP fit (a resumed,
    # finished stage 1; stage 3's task sharding and gathering) need it too. Lightning reuses it.
    dist.ensure_process_group("gloo" if cfg.trainer.accelerator == "cpu" or not _cuda() else "nccl")
    loggers = make_loggers(cfg, out)
    ctx = RunContext(cfg, out, loggers)
    log.info("run %s: seed %d, stages %s, output %s", cfg.exp_name, cfg.seed, list(cfg.stage), out)
    result = None
    try:
        for line in check_against_data(ctx):
            log.info(line)
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        for stage in cfg.stage:
            start = time.perf_counter()
            log.info("stage %s ...", stage)
            if stage == "collective":
                from learngene.pipeline.collective_stage import run_collective

                run_collective(ctx)
            elif stage == "learngene":
                from learngene.pipeline.learngene_stage import run_learngene

                run_learngene(ctx)
            elif stage == "individual":
                from learngene.pipeline.individual_stage import run_individual

                run_individual(ctx)
            elif stage == "report":
                from learngene.pipeline.report_stage import run_report, to_markdown

                result = run_report(ctx)
                if dist.is_rank_zero():
                    from rich.console import Console
                    from rich.markdown import Markdown

                    Console(file=sys.stdout, width=140).print(Markdown(to_markdown(result)))
            ctx.timings[stage] = round(time.perf_counter() - start, 1)
            log.info("stage %s done in %.1fs", stage, ctx.timings[stage])
            if dist.is_rank_zero():
                from learngene.utils.io import atomic_write_json, read_json

                path = out / "timings.json"
                previous = read_json(path) if path.exists() else {}
                atomic_write_json(path, {**previous, **ctx.timings})
    finally:
        failed = sys.exc_info()[0] is not None
        for lg in loggers:
            lg.finalize("failed" if failed else "success")
            if type(lg).__name__ == "WandbLogger":
                from learngene.pipeline.wandb_logging import finish

                finish(lg, failed)
    return result


def main_guarded(cfg: DictConfig, output_dir: str | Path) -> dict | None:
    """The entry point's wrapper: known errors print one clear line and exit with status 2."""
    try:
        return run_pipeline(cfg, output_dir)
    except LearngeneError as err:
        log.error("%s: %s", type(err).__name__, err)
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
