"""Run the selected stages in order for one resolved config."""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.pipeline import STAGES
from experiments.pipeline.collective import run_collective
from experiments.pipeline.config_check import check_against_data, check_config, with_data_limits
from experiments.pipeline.console import route_logging_through_rich
from experiments.pipeline.context import RunContext, is_wandb
from experiments.pipeline.earlier_outputs import check_earlier_outputs
from experiments.pipeline.individual_stage import run_individual
from experiments.pipeline.learngene_stage import run_learngene
from experiments.pipeline.plan import describe, trainer_processes
from experiments.pipeline.report import run_report, scalars
from experiments.pipeline.run_files import read_json_file
from experiments.pipeline.run_guard import RunInterrupted, RunLock, StopOnSignal, check_output_dir
from learngene_core.errors import CheckpointError, ConfigError, LearngeneError
from learngene_core.utils import dist
from learngene_core.utils.io import atomic_write_json

log = logging.getLogger("learngene")


def make_loggers(cfg: DictConfig, out: Path) -> list:
    """Every logger of ``cfg.logger`` (rank 0 only); W&B gets this run directory's persistent run id."""
    if not dist.is_rank_zero():
        return []
    loggers = []
    for name, node in (cfg.logger or {}).items():
        if name == "wandb":
            from experiments.pipeline.wandb_logging import make_wandb_logger

            loggers.append(make_wandb_logger(node, out))
        else:
            loggers.append(instantiate(node))
    return loggers


def quiet_libraries() -> None:
    """One Trainer per task would repeat Lightning's start-up banner and hints dozens of times."""
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*LeafSpec.*", ".*smaller than the logging interval.*", ".*does not have many workers.*",
                    ".*litlogger.*", ".*GPU available but not used.*"):  # fmt: skip
        warnings.filterwarnings("ignore", message=pattern)


def set_output_dir(cfg: DictConfig, output_dir: str | Path) -> Path:
    """``paths.output_dir`` when set, else Hydra's run directory; written back so every ``${paths.output_dir}``
    (logger save dirs) resolves to the same place."""
    out = Path(str(cfg.paths.output_dir)) if cfg.paths.get("output_dir") else Path(output_dir)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return out


@dataclass(frozen=True)
class Stage:
    """One stage: the function that runs it, what it reads and what it writes (in the run directory)."""

    function: Callable[[RunContext], object]
    reads: str
    writes: str


STAGE_FUNCTIONS: dict[str, Stage] = {
    "collective": Stage(
        run_collective, "the data", "collective/seed_<s>/ (checkpoints, metrics, gradient statistics)"
    ),
    "learngene": Stage(
        run_learngene, "collective/seed_<s>/", "learngene/seed_<s>/ (learngene.pt, learngene.json)"
    ),
    "individual": Stage(run_individual, "learngene/, collective/", "individual/results_raw.json"),
    "report": Stage(run_report, "individual/, learngene/, collective/", "results.json, results.md, plots/"),
}
assert tuple(STAGE_FUNCTIONS) == STAGES, "the stage mapping and the stage names the config check knows differ"


def run_pipeline(cfg: DictConfig, output_dir: str | Path) -> dict | None:
    """Check the config, then run ``cfg.stage`` in order; returns the results dict if the report ran.

    The run directory is locked for this process (rank 0) while it runs; SIGTERM and Ctrl-C end it with
    :class:`RunInterrupted` (what finished is saved; the same command resumes)."""
    out = set_output_dir(cfg, output_dir)
    try:
        check_config(cfg)
    except ConfigError as err:
        raise with_data_limits(err, cfg) from None  # and the data limits, where the data loads
    check_output_dir(out)
    lock = RunLock(out) if dist.is_rank_zero() else contextlib.nullcontext()
    stage = {"name": "start"}
    try:
        with lock, StopOnSignal(sigint=_one_process(cfg)):
            return _run_stages(cfg, out, stage)
    except (RunInterrupted, SIGTERMException, KeyboardInterrupt) as err:
        name = (
            err.signame
            if isinstance(err, RunInterrupted)
            else "SIGINT"
            if isinstance(err, KeyboardInterrupt)
            else "SIGTERM"
        )
        raise RunInterrupted(name).with_context(stage["name"], out) from None


def _one_process(cfg: DictConfig) -> bool:
    """Whether the run trains in this process alone (no data-parallel workers for a Ctrl-C to reach)."""
    return trainer_processes(cfg.trainer) == 1


def _run_stages(cfg: DictConfig, out: Path, current: dict) -> dict | None:
    """Start (libraries, seeds, process group, loggers); check what needs the data and earlier outputs and log the
    plan (streams, target tasks); run each stage of ``cfg.stage`` from :data:`STAGE_FUNCTIONS`, timed; finalize the
    loggers. Returns the report's results (None when the report did not run)."""
    ctx = _start(cfg, out)
    # to the microsecond: two invocations within one second (a resume with nothing left to do) stay apart
    invocation = datetime.datetime.now().isoformat(sep=" ", timespec="microseconds")
    log.info("run %s: seed %d, stages %s, output %s", cfg.exp_name, cfg.seed, list(cfg.stage), out)
    outputs: dict[str, object] = {}
    try:
        check_earlier_outputs(ctx)
        check_against_data(ctx)
        for line in describe(ctx):  # the plan: each collective seed's stream, the target tasks
            log.info(line)
        for logger in ctx.loggers:
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        for name in cfg.stage:
            current["name"] = name
            stage = STAGE_FUNCTIONS[name]
            start, cpu_start, finished = time.perf_counter(), time.process_time(), False
            log.info("stage %s ... (reads %s; writes %s)", name, stage.reads, stage.writes)
            try:
                outputs[name] = stage.function(ctx)
                finished = True
            finally:  # a stopped stage's time counts too, so a resumed run's total is the time it took
                ctx.timings[name] = round(time.perf_counter() - start, 1)
                ctx.cpu_timings[name] = round(time.process_time() - cpu_start, 1)
                if dist.is_rank_zero():
                    _record_timings_safely(out / "timings.json", ctx.timings, invocation, None if finished else name,
                                           ctx.cpu_timings)  # fmt: skip
            log.info("stage %s done in %.1fs", name, ctx.timings[name])
    finally:
        _finalize_loggers(ctx.loggers, failed=sys.exc_info()[0] is not None)
    return outputs.get("report")


def _start(cfg: DictConfig, out: Path) -> RunContext:
    quiet_libraries()
    route_logging_through_rich()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # under torchrun / srun, join the process group up front: stages other than a DDP fit (a resumed,
    # finished stage 1; stage 3's task sharding and gathering) need it too. Lightning reuses it.
    cuda = cfg.trainer.accelerator != "cpu" and torch.cuda.is_available()
    dist.ensure_process_group("nccl" if cuda else "gloo")
    return RunContext(cfg, out, make_loggers(cfg, out))


def _finalize_loggers(loggers: list, failed: bool) -> None:
    for logger in loggers:
        logger.finalize("failed" if failed else "success")
        if is_wandb(logger):
            from experiments.pipeline.wandb_logging import finish

            finish(logger, failed)


def _record_timings_safely(
    path: Path, timings: dict[str, float], invocation: str, stopped_in: str | None, cpu: dict[str, float]
) -> None:
    try:
        record_timings(path, timings, invocation, stopped_in, cpu)
    except Exception as err:  # bookkeeping: never hide the error or the stop that ended the stage
        if stopped_in is None:
            raise
        log.warning("timings.json not updated: %s", err)


def record_timings(
    path: Path,
    timings: dict[str, float],
    invocation: str,
    stopped_in: str | None = None,
    cpu: dict[str, float] | None = None,
) -> None:
    """``timings.json``: seconds per stage summed over every invocation (a resumed run adds to the time of
    the interrupted one; a stage stopped by a signal or an error counts up to the stop, and its invocation says
    ``stopped_in``; a process killed outright, SIGKILL, records nothing), and each invocation's own seconds.
    ``cpu``: this process's CPU seconds per stage (all its threads), which a pause (SIGSTOP) or other jobs
    sharing the cores do not inflate: with one thread, the compute a stage took (``total_cpu_s``)."""
    old = {}
    if path.exists():
        try:
            old = read_json_file(path, "the run's timings")
        except CheckpointError as err:  # bookkeeping only: the finished work stays, the timings start again
            log.warning(
                "%s; it is written anew with this invocation's timings only", str(err).split("; delete")[0]
            )
    runs = [r for r in old.get("invocations", []) if r.get("started") != invocation]
    runs.append(
        {
            "started": invocation,
            "stages_s": dict(timings),
            **({"stages_cpu_s": dict(cpu)} if cpu else {}),
            **({"stopped_in": stopped_in} if stopped_in else {}),
        }
    )
    total: dict[str, float] = {}
    total_cpu: dict[str, float] = {}
    for r in runs:
        for k, v in r["stages_s"].items():
            total[k] = round(total.get(k, 0.0) + v, 1)
        for k, v in r.get("stages_cpu_s", {}).items():
            total_cpu[k] = round(total_cpu.get(k, 0.0) + v, 1)
    atomic_write_json(
        path, {"total_s": total, **({"total_cpu_s": total_cpu} if total_cpu else {}), "invocations": runs}
    )


def sweep_objective(result: dict | None, metric: str | None) -> float | None:
    """The value a Hydra sweeper optimises: the logged scalar ``optimized_metric`` names (``report.scalars``)."""
    if not result or not metric:
        return None
    return scalars(result).get(metric)


def main_guarded(cfg: DictConfig, output_dir: str | Path) -> float | None:
    """The entry point's wrapper: runs the pipeline and returns the sweep's objective. Known errors print one
    clear line and exit with status 2; a run stopped by a signal says how to resume and exits with 128 + the
    signal number (143 for SIGTERM, 130 for Ctrl-C)."""
    try:
        return sweep_objective(run_pipeline(cfg, output_dir), cfg.get("optimized_metric"))
    except LearngeneError as err:
        log.error("%s: %s", type(err).__name__, err)
        print(f"error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except RunInterrupted as err:
        log.error("%s", err.message)
        print(f"stopped: {err.message}", file=sys.stderr, flush=True)
        raise SystemExit(err.exit_code) from None
