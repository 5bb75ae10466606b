"""The seams a researcher extends: the core without Lightning, a new method and a new statistic registered from
outside the package, a second backbone through the whole pipeline, the learngene API of the README."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from conftest import ROOT, TINY, compose

from experiments.pipeline.config_check import check_config
from experiments.pipeline.runner import run_pipeline
from learngene_core.errors import ConfigError


def test_the_core_package_imports_no_lightning_and_no_hydra():
    code = (
        "import importlib, pkgutil, sys, learngene_core\n"
        "for m in pkgutil.walk_packages(learngene_core.__path__, 'learngene_core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'hydra'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def toy(m, accuracy: float):
    """A method registered from outside the package: a constant classifier (its option: the accuracy)."""
    from experiments.methods.common import TaskResult
    from experiments.methods.registry import Job

    def run(tasks):
        return [TaskResult(t.seed, t.index, list(t.classes), accuracy, 0.0) for t in tasks], {"parameters": 1}

    return [Job(identity={"job": "toy"}, compute=run)]


def test_a_new_method_and_a_new_statistic_without_touching_existing_files(tmp_path):
    from experiments.methods.registry import register_method, unregister_method
    from learngene_core.criterion.registry import unregister_statistic

    # not registered until its module is imported
    with pytest.raises(ConfigError, match=r"^criterion.statistic='toy_depth': valid values are"):
        check_config(compose([*TINY, "criterion.statistic=toy_depth"], tmp_path))
    register_method("toy", "toy (a constant classifier)")(toy)
    try:  # the statistic's module (tests/toy_statistic.py) is imported by the run, as criterion.modules says
        cfg = compose([*TINY, "methods=[learngene,scratch]", "+methods.toy._target_=test_extending.toy",
                       "+methods.toy._partial_=true", "+methods.toy.accuracy=0.25", "criterion.modules=[toy_statistic]",
                       "criterion.statistic=toy_depth", "+criterion.options.toy_depth.start=4"], tmp_path)  # fmt: skip
        result = run_pipeline(cfg, tmp_path)
    finally:
        unregister_method("toy")
        unregister_statistic("toy_depth")
        sys.modules.pop("toy_statistic", None)
    rows = {r["method"]: r for r in result["tables"]["5"]}
    assert rows["toy"]["mean"] == 0.25 and rows["toy"]["label"] == "toy (a constant classifier)"
    assert rows["toy"]["paired"]["n"] == 2  # paired with scratch like every method
    info = json.loads((tmp_path / "learngene/seed_0/learngene.json").read_text())
    chosen = info["selected"]["blocks"]
    assert chosen == ["conv5", "conv6", "conv7"]  # the statistic, with its option, chose it
    assert (
        "toy_depth" in info["all_statistics"]
        and "toy (a constant classifier)" in (tmp_path / "results.md").read_text()
    )


def test_resnet12_runs_the_quickstart_pipeline_with_every_method(tmp_path):
    result = run_pipeline(compose([*TINY, "model=resnet12", "criterion.k=2"], tmp_path), tmp_path)
    rows = {r["method"]: r for r in result["tables"]["5"]}
    assert set(rows) == {"learngene", "scratch", "finetune", "linear_probe", "prototype", "protonet", "maml"}
    assert rows["learngene"]["inherited_parameters"] > 0
    assert [r["window"] for r in result["judgement"]["5"]["rows"]] == ["res1-res2", "res2-res3", "res3-res4"]
    manifest = json.loads((tmp_path / "collective/seed_0/manifest.json").read_text())
    assert manifest["tasks"][-1]["widths"] != manifest["tasks"][0]["widths"]  # residual blocks grew
    assert manifest["tasks"][-1]["distinct_filters"] == manifest["tasks"][-1]["widths"]
    art = torch.load(tmp_path / "learngene/seed_0/learngene.pt", weights_only=True)
    assert art["kind"] == "resnet12" and "conv3.weight" in art["state"][0]


def readme_api_example() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no python block after <!-- api-example -->"
    return m.group(1)


def test_the_readme_api_example_runs(finished_run, tmp_path, monkeypatch):
    code = readme_api_example()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEARNGENE_PT", str(finished_run / "learngene/seed_0/learngene.pt"))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    assert isinstance(namespace["net"], torch.nn.Module) and namespace["logits"].shape[-1] == 5


def test_learngene_blocks_carry_the_inherited_weights_and_can_be_frozen(finished_run):
    from learngene_core import build_individual_network, learngene_blocks, load_learngene

    learngene = load_learngene(finished_run / "learngene/seed_0/learngene.pt")
    blocks = learngene_blocks(learngene, trainable=False)
    assert list(dict(blocks.named_children())) == learngene.names
    for block, state in zip(blocks, learngene.state):
        for k, v in block.state_dict().items():
            assert torch.equal(v, state[k]), k
        assert not any(p.requires_grad for p in block.parameters())
    net = build_individual_network(learngene, ways=4, hidden=[32], base_width=4)
    scratch = build_individual_network(learngene, ways=4, hidden=[32], base_width=4, inherit=False)
    inherited = net.blocks[-1].state_dict()
    assert all(torch.equal(inherited[k], learngene.state[-1][k]) for k in inherited)
    assert not torch.equal(scratch.blocks[-1].conv.weight, net.blocks[-1].conv.weight)
    with pytest.raises(Exception, match="32 px"):
        load_learngene(finished_run / "learngene/seed_0/learngene.pt", input_size=64)


def _toy_section_table(inp) -> dict:
    accs = {e["arm"]: inp.raw["computations"][e["computation"]]["tasks"][0]["acc"] for e in inp.entries}
    return {"arms": accs}


TOY_SECTION = None  # set below, once the report package is importable


@dataclass
class ToyArms:
    """A method with two arms and one option, as a dataclass (its fields are its options)."""

    level: float

    def __call__(self, m):
        from experiments.methods.common import TaskResult
        from experiments.methods.registry import Job

        def job(arm, offset):
            def run(tasks):
                acc = self.level + offset
                return [TaskResult(t.seed, t.index, list(t.classes), acc, 0.0) for t in tasks], {
                    "parameters": 1
                }

            return Job(
                identity={"job": "toy_arms", "arm": arm}, compute=run, arm=arm
            )  # no "level" written here

        return [job("low", 0.0), job("high", 0.1)]


def test_a_multi_arm_method_reports_its_own_section_and_its_options_are_part_of_its_identity(tmp_path):
    """A method with arms names its own report section where it is registered (the report names no method), and
    its config node is part of every job's identity although the job does not write it: rerunning stage 3 with
    another value of its option computes anew instead of reusing the cached result."""
    global TOY_SECTION
    from experiments.methods.registry import register_method, unregister_method
    from experiments.pipeline.report.sections import ReportSection

    TOY_SECTION = ReportSection(
        table=_toy_section_table,
        markdown=lambda shots, t: ["", f"Toy arms ({shots}-shot): {sorted(t['arms'].items())}"],
        terminal=lambda t: [f"  toy arms: {sorted(t['arms'])}"],
        scalars=lambda shots, t: {f"toy/{arm}/{shots}shot": v for arm, v in t["arms"].items()},
    )

    register_method("toy_arms", "toy (two constant arms)", section=f"{__name__}:TOY_SECTION")(ToyArms)
    target = ["+methods.toy_arms._target_=test_extending.ToyArms"]
    try:
        cfg = compose(
            [*TINY, "methods=[learngene,scratch]", *target, "+methods.toy_arms.level=0.25"], tmp_path
        )
        first = run_pipeline(cfg, tmp_path)
        again = compose([*TINY, "methods=[learngene,scratch]", *target, "+methods.toy_arms.level=0.5",
                         "stage=[individual,report]"], tmp_path)  # fmt: skip
        second = run_pipeline(again, tmp_path)
        from experiments.pipeline.report import scalars, terminal_summary

        logged, summary = scalars(second), terminal_summary(second, tmp_path / "results.md")
    finally:
        unregister_method("toy_arms")
    assert first["toy_arms"]["5"]["arms"] == {"low": 0.25, "high": pytest.approx(0.35)}
    assert second["toy_arms"]["5"]["arms"] == {"low": 0.5, "high": pytest.approx(0.6)}
    assert "toy_arms" not in {r["method"] for r in second["tables"]["5"]}  # its own section, not a table row
    assert "Toy arms (5-shot): [('high', 0.6" in (tmp_path / "results.md").read_text()
    assert logged["toy/low/5shot"] == 0.5
    assert "toy arms: ['high', 'low']" in summary


def test_one_method_is_the_reference_of_every_paired_difference():
    from experiments.methods.registry import METHODS, reference_method, register_method

    assert reference_method() == "scratch"
    with pytest.raises(ValueError, match="'scratch' already is"):
        register_method("toy_ref", "toy reference", reference=True)(lambda m: [])
    assert "toy_ref" not in METHODS
