"""Runs that survive faults and bad input: locked run directories, signals, damaged files, write failures,
data-dependent limits, any channel count and image size. Tiny generated data wherever data is needed."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY, compose, kill_collective_after_task

from experiments.pipeline.config_check import check_config
from experiments.pipeline.run_guard import RunInterrupted, RunLock, StopOnSignal
from experiments.pipeline.runner import run_pipeline
from learngene_core.errors import CheckpointError, ConfigError, OutputError

RUN_PY = str(ROOT / "experiments" / "run.py")
C0 = "collective/seed_0"


def cli(*args: str, timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, RUN_PY, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)  # fmt: skip


def write_npz(path: Path, classes: int = 12, train: int = 24, test: int = 8, size: int = 32, channels: int | None = 3,
              seed: int = 0) -> Path:  # fmt: skip
    """An npz in the shared/data format: separable class blobs; ``channels=None`` writes (N, H, W) grayscale."""
    rng = np.random.default_rng(seed)

    def images(n):
        c = 1 if channels is None else channels
        x = rng.normal(90, 30, size=(classes * n, size, size, c))
        for k in range(classes):
            p = (k * 3) % (size - 4)
            x[k * n : (k + 1) * n, p : p + 4, p : p + 4, :] += 120
        x = x.clip(0, 255).astype(np.uint8)
        return (x[..., 0] if channels is None else x), np.repeat(np.arange(classes), n).astype(np.int16)

    xtr, ytr = images(train)
    xte, yte = images(test)
    split = np.zeros(classes, dtype=np.int8)  # 0 base, 1 open world, 2 novel
    split[-4:], split[-6:-4] = 2, 1  # novel: the last 4, open world: the 2 before
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, class_names=np.array([f"c{i}" for i in range(classes)]),
             split=split)  # fmt: skip
    return path


NPZ_TINY = [o for o in TINY if not o.startswith("target.shots")] + [
    "data=npz", "target.shots=[5]", "target.ways=3", "collective.classes_per_task=3",
]  # fmt: skip


# -- any image data set -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("channels", "size"), [(None, 32), (1, 32), (4, 32), (3, 84)])
def test_any_channel_count_and_an_84px_set_run_end_to_end(channels, size, tmp_path):
    npz = write_npz(tmp_path / "d.npz", size=size, channels=channels)
    cfg = compose([*NPZ_TINY, f"data.path={npz}", f"data.image_size={size}", "methods=[learngene,scratch,protonet]"],
                  tmp_path / "run")  # fmt: skip
    result = run_pipeline(cfg, tmp_path / "run")
    assert {r["method"] for r in result["tables"]["5"]} == {"learngene", "scratch", "protonet"}
    art = torch.load(tmp_path / "run/learngene/seed_0/learngene.pt", weights_only=True)
    assert art["image_channels"] == (1 if channels is None else channels) and art["input_size"] == size


def test_normalisation_that_does_not_match_the_channels_is_named(tmp_path):
    npz = write_npz(tmp_path / "g.npz", channels=None)
    cfg = compose(
        [*NPZ_TINY, f"data.path={npz}", "data.image_size=32", "data.mean=[0.5,0.5,0.5]"], tmp_path / "r"
    )
    with pytest.raises(
        ConfigError, match=r"data.mean=\[0.5, 0.5, 0.5\]: 3 values but the images have 1 channel"
    ):
        run_pipeline(cfg, tmp_path / "r")
    assert not (tmp_path / "r" / "collective").exists()


LIMITS = [
    (["methods=[protonet]", "methods.protonet.shots=5", "methods.protonet.queries=15"],
     r"methods.protonet.queries=15: 5 shots .* need 20 training images per base class but .* has 15; use "
     r"methods.protonet.queries <= 10"),
    (["methods=[maml]", "methods.maml.queries=14"], r"methods.maml.queries=14: .*has 15"),
    (["target.shots=[16]"], r"target.shots=\[16\]: 16 shots need 16 training images .* has 15"),
    (["target.ways=5"], r"target.ways=5: the novel group has 4 classes; use at most 4"),
    (["methods=[protonet]", "methods.protonet.ways=7"], r"methods.protonet.ways=7: .*6 base classes"),
    (["collective.classes_per_task=7"], r"collective.classes_per_task=7: there are 6 base classes"),
    (["collective.replacement=false", "budget.collective_tasks=3"], r"collective.n_tasks=3: with collective.replacement"),
    (["collective.train_per_class=16"], r"collective.train_per_class=16: a base class has only 15"),
    (["target.protocol=episodic", "target.queries=12"], r"target.shots=\[5\]: 5 shots \+ 12 queries"),
    (["data.image_size=16"], r"data.image_size=16: .*too small for the network.s 5 2x2 pools; use images of at least 32"),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "message"), LIMITS, ids=[m[0][0].split("=")[0] for m in LIMITS])
def test_every_data_dependent_limit_is_checked_before_any_work(overrides, message, tmp_path):
    npz = write_npz(tmp_path / "d.npz", train=15)  # 15 training images per class
    cfg = compose([*NPZ_TINY, f"data.path={npz}", "data.image_size=32", *overrides], tmp_path / "r")
    with pytest.raises(ConfigError, match=message):
        run_pipeline(cfg, tmp_path / "r")
    assert not (tmp_path / "r" / "collective").exists()  # nothing trained


# -- no silent failure ---------------------------------------------------------------------------------------
def test_report_without_results_is_an_error_naming_what_is_missing(tmp_path):
    with pytest.raises(
        ConfigError, match=r"the report needs stage-3 results and .*results_raw.json does not exist"
    ):
        check_config(compose(["stage=[report]"], tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_trainer_without_cuda_is_refused_before_the_data_loads(tmp_path):
    out = cli("trainer=gpu", f"paths.output_dir={tmp_path}")
    assert out.returncode == 2
    assert "trainer.accelerator='gpu': no CUDA device is available" in out.stderr
    assert "data:" not in out.stdout + out.stderr  # refused before loading anything


def test_a_sweep_without_its_environment_variable_says_so(tmp_path):
    with pytest.raises(ConfigError, match="LEARNGENE_FROM_RUN is not set"):
        check_config(compose(["from_run=LEARNGENE_FROM_RUN", "stage=[learngene]"], tmp_path))


def test_written_files_honour_the_umask(tmp_path):
    from learngene_core.utils.io import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o002)
        atomic_write_json(tmp_path / "b.json", {"x": 1})
        assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


# -- runs that survive faults --------------------------------------------------------------------------------
def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from experiments.pipeline.run_guard import RunLock; from pathlib import Path\n"
         "with RunLock(Path(sys.argv[2]), 'the first run'):\n    print('locked', flush=True); time.sleep(60)",
         str(ROOT), str(tmp_path)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        out = cli(*TINY, f"paths.output_dir={tmp_path}")
        assert out.returncode == 2
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {tmp_path} is in use by another run (pid {holder.pid} on ")
        assert "the first run" in last and "Traceback" not in out.stderr
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # released with its holder
        pass


@pytest.fixture
def interactive_sigint():
    """SIGINT as in an interactive Python (KeyboardInterrupt), whatever this process inherited: a test run started
    as a background job of a non-interactive shell starts with SIGINT ignored, and a run keeps that."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigint_default() -> None:
    """Popen's preexec_fn: the child starts with SIGINT at its default, so Python installs KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_after_the_first_task(args: list[str], out: Path, signum: int) -> tuple[int, str]:
    """Run the pipeline in a child process, send it ``signum`` once its first collective task is recorded, and
    return its exit status and stderr."""
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, RUN_PY, *args, f"paths.output_dir={out}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out / C0 / "task_00.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_inside_an_except_exception_block_still_stops_the_run(signum, interactive_sigint):
    """The handler raises wherever the main thread is; library code there that catches ``Exception`` (inspect's
    signature probing inside Lightning's ``self.log`` turned it into a TypeError, exit 1 instead of 143) must not
    swallow the stop."""
    swallowed = False
    with pytest.raises(RunInterrupted, match=signal.Signals(signum).name), StopOnSignal():
        try:
            os.kill(os.getpid(), signum)
            time.sleep(1.0)  # the handler runs here, inside the try
        except Exception:
            swallowed = True
    assert not swallowed
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sigterm_stops_with_143_and_the_rerun_resumes_exactly(tmp_path):
    args = [*TINY, "stage=[collective]", "budget.collective_tasks=3", "trainer.deterministic=true"]
    straight = tmp_path / "straight"
    assert cli(*args, f"paths.output_dir={straight}").returncode == 0
    killed = tmp_path / "killed"
    returncode, err = _signal_after_the_first_task(
        [*args, "budget.collective_epochs=4"], killed, signal.SIGTERM
    )
    assert returncode == 143, err[-2000:]
    assert "stopped by SIGTERM during stage collective" in err and "rerun the same command" in err
    assert "Traceback" not in err
    # the rerun (the same settings as the straight run) resumes at the first unfinished task, exactly
    shutil.rmtree(killed / "logs", ignore_errors=True)
    assert cli(*args, "budget.collective_epochs=4", f"paths.output_dir={killed}").returncode == 0
    again = tmp_path / "again"
    assert cli(*args, "budget.collective_epochs=4", f"paths.output_dir={again}").returncode == 0
    a = torch.load(killed / C0 / "task_02.pt", weights_only=True)["state_dict"]
    b = torch.load(again / C0 / "task_02.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_signal_the_process_ignores_stays_ignored_and_ddp_leaves_ctrl_c_to_lightning(
    tmp_path, interactive_sigint
):
    from experiments.pipeline.runner import _one_process

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as for a background job or nohup
    try:
        with StopOnSignal():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # ignored: nothing raised
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    with StopOnSignal(sigint=False):
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert _one_process(compose([], tmp_path)) and not _one_process(compose(["trainer=ddp"], tmp_path))


def test_ctrl_c_during_a_fit_stops_with_130_and_says_how_to_resume(tmp_path):
    """Lightning turns a KeyboardInterrupt inside ``fit`` into ``sys.exit(1)``; the run's own SIGINT handler
    comes first, so Ctrl-C reads as a stop (130) with the resume line, as SIGTERM does."""
    args = [*TINY, "stage=[collective]", "budget.collective_tasks=3", "budget.collective_epochs=4"]
    returncode, err = _signal_after_the_first_task(args, tmp_path / "interrupted", signal.SIGINT)
    assert returncode == 130, err[-2000:]
    assert "stopped by SIGINT during stage collective" in err and "Traceback" not in err


@pytest.fixture
def copied_run(finished_run, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(finished_run, dst)
    return dst


@pytest.mark.parametrize(
    "content", ["garbage{", '{"format": "learngene-suite/collective-manifest", "tasks": [', "[]"]
)
def test_a_damaged_manifest_is_named(copied_run, tmp_path, content):
    (copied_run / C0 / "manifest.json").write_text(content)
    cfg = compose([*TINY, "stage=[learngene]", f"from_run={copied_run}"], tmp_path / "out")
    with pytest.raises(CheckpointError, match=r"manifest.json"):
        run_pipeline(cfg, tmp_path / "out")


def test_damaged_metrics_results_and_meta_weights_are_named_before_any_work(copied_run, tmp_path):
    out = tmp_path / "out"
    base = [*TINY, f"from_run={copied_run}"]
    (copied_run / C0 / "metrics.json").write_text('{"class_incremental": ')
    with pytest.raises(CheckpointError, match=r"metrics.json \(collective metrics\) is damaged"):
        run_pipeline(compose([*base, "stage=[individual,report]", "methods=[learngene]"], out), out)
    assert not (out / "individual").exists()  # named before stage 3 ran
    (copied_run / C0 / "metrics.json").write_text(
        "{}"
    )  # readable, but holds nothing: the report goes without
    raw = out / "individual" / "results_raw.json"
    raw.parent.mkdir(parents=True)
    raw.write_text("not json")
    with pytest.raises(CheckpointError, match=r"results_raw.json \(stage-3 results\) is damaged"):
        run_pipeline(compose([*base, "stage=[individual,report]", "methods=[learngene]"], out), out)
    raw.unlink()
    run_pipeline(compose([*base, "stage=[individual,report]", "methods=[protonet]"], out), out)
    [weights] = list((out / "individual").glob("protonet-*.pt"))
    weights.write_bytes(weights.read_bytes()[:100])  # truncated by a kill
    raw.unlink()
    with pytest.raises(
        CheckpointError, match=r"protonet-.*\.pt is damaged or cut off .*meta-trained weights are unusable"
    ):
        run_pipeline(compose([*base, "stage=[individual,report]", "methods=[protonet]"], out), out)


def test_an_unfinished_collective_run_is_refused_as_from_run(tmp_path):
    src = tmp_path / "src"
    run_pipeline(compose([*TINY, "stage=[collective]"], src), src)
    manifest = json.loads((src / C0 / "manifest.json").read_text())
    manifest["tasks"] = manifest["tasks"][:2]  # as if killed after 2 of 3 tasks
    (src / C0 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"unfinished \(2 of 3 tasks\).*criterion.after_task <= 1"):
        run_pipeline(compose([*TINY, "stage=[learngene]", f"from_run={src}"], tmp_path / "a"), tmp_path / "a")
    run_pipeline(compose([*TINY, "stage=[learngene]", f"from_run={src}", "criterion.after_task=1"], tmp_path / "b"),
                 tmp_path / "b")  # fmt: skip
    manifest["tasks"][1]["checkpoint"] = (
        "task_00.pt"  # a manifest entry pointing at another task's checkpoint
    )
    (src / C0 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(
        CheckpointError, match=r"task_00.pt holds task 0 but the manifest lists it for task 1"
    ):
        run_pipeline(compose([*TINY, "stage=[learngene]", f"from_run={src}", "criterion.after_task=1"],
                             tmp_path / "c"), tmp_path / "c")  # fmt: skip


def test_an_output_path_that_is_not_a_writable_folder_is_refused_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"paths.output_dir=.*file.* cannot be created|is not a folder"):
        run_pipeline(compose(TINY, blocker), blocker)
    with pytest.raises(ConfigError, match=r"cannot be created"):
        run_pipeline(compose(TINY, blocker / "sub"), blocker / "sub")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_or_read_only_folder_during_a_run_is_one_line(tmp_path, monkeypatch, code):
    import learngene_core.utils.io as io

    real = io.os.replace

    def failing(src, dst):
        if str(dst).endswith("manifest.json"):
            raise OSError(code, os.strerror(code))
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", failing)
    with pytest.raises(OutputError, match=rf"cannot write .*manifest.json \({os.strerror(code)}\).*rerun"):
        run_pipeline(compose([*TINY, "stage=[collective]"], tmp_path), tmp_path)
    assert not list(tmp_path.rglob(".manifest.json.*.tmp"))  # no temporary file left behind


def test_a_damaged_timings_file_is_named_and_replaced_not_fatal(tmp_path, caplog):
    (tmp_path / "timings.json").write_text('{"total_s": {"collect')  # cut off by a kill
    run_pipeline(compose([*TINY, "stage=[collective]", "budget.collective_tasks=2"], tmp_path), tmp_path)
    t = json.loads((tmp_path / "timings.json").read_text())
    assert len(t["invocations"]) == 1 and t["total_s"]["collective"] > 0
    assert any("timings.json" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)


def test_timings_add_up_over_a_resume(tmp_path):
    run_pipeline(compose([*TINY, "stage=[collective]", "budget.collective_tasks=2"], tmp_path), tmp_path)
    first = json.loads((tmp_path / "timings.json").read_text())
    run_pipeline(compose([*TINY, "stage=[collective]", "budget.collective_tasks=2"], tmp_path), tmp_path)
    t = json.loads((tmp_path / "timings.json").read_text())
    assert len(t["invocations"]) == 2
    assert t["total_s"]["collective"] == pytest.approx(
        sum(r["stages_s"]["collective"] for r in t["invocations"]), abs=0.2
    )
    assert t["total_s"]["collective"] >= first["total_s"]["collective"]


def test_cpu_seconds_are_recorded_beside_wall_time_and_a_wait_does_not_count(
    finished_run, tmp_path, monkeypatch
):
    """A pause or other jobs on the cores inflate wall time, not CPU time: a stage that waits 1 s shows it."""
    import dataclasses

    from experiments.pipeline import runner

    learngene = runner.STAGE_FUNCTIONS["learngene"]

    def waits_then_runs(ctx):
        time.sleep(1.0)  # as a SIGSTOP, or another job holding the core, would
        return learngene.function(ctx)

    monkeypatch.setitem(
        runner.STAGE_FUNCTIONS, "learngene", dataclasses.replace(learngene, function=waits_then_runs)
    )
    run_pipeline(compose([*TINY, "stage=[learngene,individual,report]", f"from_run={finished_run}",
                          "methods=[learngene]"], tmp_path), tmp_path)  # fmt: skip
    t = json.loads((tmp_path / "timings.json").read_text())
    assert (
        t["total_s"]["learngene"] >= 1.0 and t["total_cpu_s"]["learngene"] < t["total_s"]["learngene"] - 0.8
    )
    assert t["total_cpu_s"]["individual"] > 0
    raw = json.loads((tmp_path / "individual" / "results_raw.json").read_text())
    assert all(c["cpu_time_s"] > 0 for c in raw["computations"].values())
    manifest = json.loads((finished_run / "collective/seed_0/manifest.json").read_text())
    assert all(e["cpu_time_s"] > 0 for e in manifest["tasks"])


def test_a_stopped_stage_s_time_is_recorded_and_the_resume_adds_to_it(tmp_path, monkeypatch):
    args = [*TINY, "stage=[collective]", "budget.collective_tasks=3"]
    undo_kill = kill_collective_after_task(monkeypatch, 1)
    with pytest.raises(RunInterrupted):
        run_pipeline(compose(args, tmp_path), tmp_path)
    undo_kill()
    stopped = json.loads((tmp_path / "timings.json").read_text())["invocations"]
    assert (
        len(stopped) == 1
        and stopped[0]["stopped_in"] == "collective"
        and stopped[0]["stages_s"]["collective"] > 0
    )
    run_pipeline(compose(args, tmp_path), tmp_path)
    t = json.loads((tmp_path / "timings.json").read_text())
    assert [("stopped_in" in r) for r in t["invocations"]] == [True, False]
    assert t["total_s"]["collective"] == pytest.approx(
        sum(r["stages_s"]["collective"] for r in t["invocations"]), abs=0.2
    )


# -- follow a run ----------------------------------------------------------------------------------------------
def test_a_run_without_a_terminal_logs_every_epoch_with_its_speed(tmp_path):
    out = cli(*TINY, "stage=[collective]", f"paths.output_dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert (
        "collective seed 0 task 1/3 epoch 1/1" in text and "samples/s" in text and "left in this fit" in text
    )


def test_csv_logs_rise_across_tasks_and_carry_the_criterion(tmp_path):
    run_pipeline(
        compose([*TINY, "logger=csv", "stage=[collective]", "budget.collective_epochs=2"], tmp_path), tmp_path
    )
    import csv

    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    loss = [(int(r["step"]), float(r["collective/task"])) for r in rows if r.get("collective/train/loss")]
    steps = [s for s, _ in loss]
    assert (
        steps == sorted(steps) and len(set(steps)) == len(steps) == 6
    )  # 3 tasks x 2 epochs, never restarting
    assert [t for _, t in loss] == [0, 0, 1, 1, 2, 2]
    assert any(r.get("criterion/weight_change/conv1") for r in rows)
    assert any(r.get("criterion/paper_signed_frac/conv13") for r in rows)


def test_tensorboard_logger(tmp_path):
    run_pipeline(compose([*TINY, "logger=tensorboard", "stage=[collective]"], tmp_path), tmp_path)
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))


@pytest.mark.slow
@pytest.mark.parametrize(("channels", "size"), [(None, 32), (3, 84)], ids=["grayscale", "84px"])
def test_the_documented_command_runs_the_quickstart_budget_on_a_new_npz(channels, size, tmp_path):
    """docs/data.md: `python experiments/run.py data=npz data.path=FILE [data.image_size=84]` on a data set the
    suite has never seen (20 classes: 14 base, 2 open-world, 4 novel... with ways and classes per task that fit)."""
    npz = write_npz(tmp_path / "new.npz", classes=20, train=40, test=10, size=size, channels=channels)
    args = ["data=npz", f"data.path={npz}", f"data.image_size={size}", "target.ways=4", "logger=none",
            f"paths.output_dir={tmp_path / 'run'}"]  # fmt: skip
    out = cli(*args, timeout=3600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {r["method"] for r in res["tables"]["10"]} >= {"learngene", "scratch", "protonet", "maml"}
