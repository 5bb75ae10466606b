"""The GPU benchmark script runs end to end (tiny budget, CPU) and writes its one JSON file."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_gpu_paper_scale_script_runs_at_a_tiny_budget_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, TINY="1", RUN_DIR=str(tmp_path / "run"), OUT_JSON=str(out), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_paper_scale.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    payload = json.loads(out.read_text())
    assert payload["stage_time_s"].keys() >= {"collective", "learngene", "individual", "report"}
    assert len(payload["collective_task_time_s"]) == 3
    acc = payload["accuracy"]
    assert set(acc) == {"10", "20"}
    assert {"learngene", "scratch", "finetune", "protonet", "maml"} <= set(acc["10"])
    assert all(0 <= m["mean"] <= 1 for m in acc["10"].values())
