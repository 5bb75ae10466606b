"""Descendants of many sizes from one learngene: the adaptation strategies keep what they promise."""

from __future__ import annotations

import pytest
import torch

from learngene_core.artifact import extract_learngene
from learngene_core.backbones.base import make_block
from learngene_core.backbones.resnet12 import resnet12
from learngene_core.backbones.vgg import vgg
from learngene_core.descendants import (
    INTERNAL_UNITS,
    DeepenIdentity,
    Narrow,
    Repeat,
    Shape,
    Truncate,
    Widen,
    adapt,
    check_shape,
    check_shape_value,
    descendant_spec,
    input_importance,
    output_importance,
    top,
)
from learngene_core.errors import ConfigError


def _trained_like(net):
    """Non-trivial BatchNorm statistics and affine parameters (a freshly built net has identity BatchNorm)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if (
                "running_var" in name
                or name.endswith("bn.weight")
                or ".bn" in name
                and name.endswith("weight")
            ):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif "running_mean" in name or ("bn" in name and name.endswith("bias")):
                t.copy_(0.2 * torch.randn(t.shape, generator=g))
    return net


def vgg_learngene():
    torch.manual_seed(0)
    net = _trained_like(vgg(32, 3, 10, widths=[8, 8, 16, 16, 16, 16], pool_after=(2, 4, 6), hidden=[16]))
    return extract_learngene(net, 3, 3)  # conv4-conv6: 16 -> 16 -> 16 -> 16


def resnet_learngene():
    torch.manual_seed(0)
    net = _trained_like(resnet12(32, 3, 10, widths=[8, 12, 12, 16]))
    return extract_learngene(net, 1, 3)  # res2-res4: 8 -> 12 -> 12 -> 16


def run_window(window, x):
    with torch.no_grad():
        for spec, st in zip(window.blocks, window.state):
            b = make_block(window.kind, spec)
            b.load_state_dict(st)
            x = b.eval()(x)
    return x


def close(a, b, rtol=1e-5):
    return float((a - b).abs().max()) <= rtol * float(b.abs().max())


def _x(window, batch=4, size=8):
    return torch.randn(batch, window.in_channels, size, size, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("make", [vgg_learngene, resnet_learngene])
def test_widening_keeps_the_window_function(make):
    lg = make()
    wide = adapt(lg, Shape(2.0), [Widen(noise=0.5)])
    assert [b.out_channels for b in wide.blocks] == [2 * b.out_channels for b in lg.blocks]
    assert wide.in_channels == 2 * lg.in_channels
    x = _x(lg)
    extra = torch.randn(x.shape[0], wide.in_channels - lg.in_channels, *x.shape[2:])
    y, y2 = run_window(lg, x), run_window(wide, torch.cat([x, extra], 1))
    c = y.shape[1]
    assert close(y2[:, :c], y)
    # the new units are copies of old ones, and the noise made the inner blocks' copies differ
    assert not torch.equal(wide.state[1][make_block(lg.kind, lg.blocks[1]).input_keys[0]][:, c:],
                           torch.zeros_like(wide.state[1][make_block(lg.kind, lg.blocks[1]).input_keys[0]][:, c:]))  # fmt: skip


def test_identity_deepening_keeps_the_window_function():
    lg = vgg_learngene()
    deep = adapt(lg, Shape(1.0, "+2"), [DeepenIdentity()])
    assert [b.name for b in deep.blocks] == ["conv4", "conv5", "conv6", "conv6+1", "conv6+2"]
    assert deep.blocks[2].pools == 0
    x = _x(lg)
    y = run_window(lg, x)
    unpooled = adapt(lg, Shape(1.0, "+2"), [Repeat()])
    assert [b.name for b in unpooled.blocks] == [
        b.name for b in deep.blocks
    ]  # same spec: one scratch network
    y_deep = run_window(deep, x)
    # the last inherited block's pool moved after the appended blocks: compare at the same resolution
    assert close(torch.nn.functional.max_pool2d(y_deep, 2), y)


def test_wider_and_deeper_together_keep_the_function():
    lg = vgg_learngene()
    both = adapt(lg, Shape(1.5, "+1"), [Widen(), DeepenIdentity()])
    x = _x(lg)
    extra = torch.zeros(x.shape[0], both.in_channels - lg.in_channels, *x.shape[2:])
    y = run_window(lg, x)
    y2 = torch.nn.functional.max_pool2d(run_window(both, torch.cat([x, extra], 1)), 2)
    assert close(y2[:, : y.shape[1]], y)


@pytest.mark.parametrize("make", [vgg_learngene, resnet_learngene])
def test_narrowing_keeps_exactly_the_selected_filters(make):
    lg = make()
    narrow = adapt(lg, Shape(0.5), [Narrow()])
    assert [b.out_channels for b in narrow.blocks] == [b.out_channels // 2 for b in lg.blocks]
    cls = type(make_block(lg.kind, lg.blocks[0]))
    keeps = [top(output_importance(lg.kind, st), b.out_channels // 2) for st, b in zip(lg.state, lg.blocks)]
    for i, (st, new) in enumerate(zip(lg.state, narrow.state)):
        rows, cols = {k: keeps[i] for k in cls.output_keys}, {}
        if i > 0:
            cols.update({k: keeps[i - 1] for k in cls.input_keys})
        for layer, bn, reader in INTERNAL_UNITS.get(lg.kind, ()):  # widths inside a block: by their own norms
            w = st[f"{layer}.weight"]
            inner = top(w.reshape(w.shape[0], -1).norm(dim=1), len(keeps[i]))
            rows.update(
                {k: inner for k in st if k == f"{layer}.weight" or (k.startswith(f"{bn}.") and st[k].ndim)}
            )
            cols[f"{reader}.weight"] = inner
        if i == 0:  # the first block keeps the input channels its kept filters read most (L2 norm)
            kept_rows = {k: st[k][rows[k]] for k in cls.input_keys}
            cols.update(
                {k: top(input_importance(lg.kind, kept_rows), narrow.in_channels) for k in cls.input_keys}
            )
        for k, v in st.items():
            want = v[rows[k]] if k in rows else v
            want = want[:, cols[k]] if k in cols else want
            assert torch.equal(new[k], want), (i, k)
    # the kept filters are the largest by L2 norm
    norms = output_importance(lg.kind, lg.state[0])
    assert norms[keeps[0]].min() >= norms[[j for j in range(len(norms)) if j not in keeps[0].tolist()]].max()
    # the narrowed window runs
    run_window(narrow, torch.randn(2, narrow.in_channels, 8, 8))


def test_truncate_keeps_the_first_blocks_bitwise():
    lg = vgg_learngene()
    short = adapt(lg, Shape(1.0, "-2"), [Truncate()])
    assert short.names == ["conv4"] and all(
        torch.equal(short.state[0][k], lg.state[0][k]) for k in lg.state[0]
    )


def test_repeat_shares_the_initial_weights_on_resnet():
    lg = resnet_learngene()
    deep = adapt(lg, Shape(1.0, "+2"), [Repeat()])
    assert [b.in_channels for b in deep.blocks[3:]] == [16, 16]
    last = lg.state[-1]
    for st in deep.state[3:]:
        assert torch.equal(st["conv2.weight"], last["conv2.weight"])
        assert torch.equal(st["conv1.weight"][:, :12], last["conv1.weight"])  # zero weights on added inputs
        assert not st["conv1.weight"][:, 12:].any()


def test_descendant_spec_counts_the_blocks():
    lg = vgg_learngene()
    spec, n_lower = descendant_spec(adapt(lg, Shape(1.0, 5), [Truncate()], 4), Shape(1.0, 5), 5, [16], 4)
    assert n_lower == 3 and len(spec.blocks) == 5  # lower widths 4, 8, 16, then conv4, conv5
    spec2, _ = descendant_spec(adapt(lg, Shape(0.5), [Narrow()], 4), Shape(0.5), 5, [16], 4)
    assert spec2.blocks[n_lower].in_channels == 8 and spec2.blocks[n_lower - 1].out_channels == 8


@pytest.mark.parametrize(
    ("width", "depth", "strategies", "match"),
    [
        (0, None, [], r"^shapes\[0\]\.width=0: must be a number > 0"),
        (1.0, "deeper", [], r"^shapes\[0\]\.depth='deeper'"),
        (1.0, 3, [Truncate()], r"^shapes\[0\]\.depth=3: the descendant needs at least 4 blocks"),
        (2.0, None, [], r"^strategy: the shape w2 is wider .* no wider strategy"),
        (2.0, None, [Narrow()], r"^strategy='narrow': the shape w2 is not narrower"),
    ],
)
def test_unbuildable_shapes_are_refused_naming_the_key(width, depth, strategies, match):
    lg = vgg_learngene()
    with pytest.raises(ConfigError, match=match) as err:
        shape = check_shape_value(width, depth, "shapes[0]")
        check_shape(lg, shape, strategies, base_width=4, key="shapes[0]")
    assert "\n" not in str(err.value)


def test_identity_deepening_is_refused_for_resnet():
    with pytest.raises(ConfigError, match=r"^strategy='deepen': the 'resnet12' backbone cannot deepen"):
        check_shape(resnet_learngene(), Shape(1.0, "+1"), [DeepenIdentity()])


# -- the stage-3 method, its report and its config ---------------------------------------------------------


def test_exp_descendants_runs_and_reports_every_shape(finished_run, tmp_path):
    import json

    from conftest import TINY, compose

    from experiments.pipeline.runner import run_pipeline

    out = tmp_path / "run"
    cfg = compose([*TINY, "+exp=[quickstart,descendants]", "budget.target_tasks=1", "stage=[individual,report]",
                   f"from_run={finished_run}"], out)  # fmt: skip
    res = run_pipeline(cfg, out)
    rows = res["descendants"]["5"]["rows"]
    arms = {r["arm"] for r in rows}
    assert {"inherit:w0.5/narrow", "inherit:w1/none", "inherit:w2/widen", "inherit:w1-d-1/truncate",
            "inherit:w1-d+1/deepen", "inherit:w1-d+1/repeat", "inherit:w2-d+1/widen+deepen",
            "inherit:w2-d+1/widen+repeat"} == arms  # fmt: skip
    by = {r["arm"]: r for r in rows}
    assert (
        by["inherit:w0.5/narrow"]["parameters"]
        < by["inherit:w1/none"]["parameters"]
        < by["inherit:w2/widen"]["parameters"]
    )
    assert all(r["gain"] is not None and r["scratch"] is not None for r in rows)
    # the paper's shape is the learngene / scratch methods' computation
    learngene = next(r for r in res["tables"]["5"] if r["method"] == "learngene")
    assert by["inherit:w1/none"]["inherit"]["mean"] == learngene["mean"]
    assert {r["method"] for r in res["tables"]["5"]} == {"learngene", "scratch"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["descendants"]["5"]["rows"][0]["arm"] == rows[0]["arm"]
    assert "Descendants (5-shot)" in (out / "results.md").read_text()
    assert (out / "plots/descendants_5shot.png").exists()
    from experiments.pipeline.report import scalars

    assert "individual/test/paired_diff/descendants/w2-d+1/widen+repeat/5shot" in scalars(res)


def test_the_descendants_plot_and_terminal_lines_show_every_arm(tmp_path):
    """Two panels (gain; inherited and scratch accuracy) from the report's rows, a row without its scratch arm
    (an interrupted run's report) left out of both rather than failing."""
    import matplotlib.image

    from experiments.pipeline.report.descendants import plot_descendants

    def row(shape, strategy, params, acc, scratch):
        s = {"mean": scratch, "ci95": 0.02} if scratch is not None else None
        gain = {"mean_diff": acc - scratch, "ci95": 0.03, "p": 0.01, "n": 15} if scratch is not None else None
        return {"shape": shape, "strategy": strategy, "parameters": params, "inherit": {"mean": acc, "ci95": 0.02},
                "scratch": s, "gain": gain}  # fmt: skip

    rows = [row("w0.5", "narrow", 1e5, 0.5, 0.45), row("w1", "none", 2e5, 0.6, 0.55),
            row("w2", "widen", 7e5, 0.62, None), row("w2-d+1", "widen+repeat", 9e5, 0.64, 0.6)]  # fmt: skip
    path = plot_descendants(rows, tmp_path / "d.png", "descendants, 5-shot")
    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 2 * height  # the two panels side by side
    from experiments.pipeline.report.descendants import descendants_terminal

    lines = descendants_terminal({"rows": rows})
    assert len(lines) == 1 + len(rows) and all(len(line) <= 98 for line in lines)
    assert "n/a (no scratch arm)" in lines[3] and "+4.0" in lines[4]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("methods.descendants.shapes=[{width:0}]", r"methods\.descendants\.shapes\[0\]\.width=0"),
        (
            "methods.descendants.shapes=[{width:1,depth:deep}]",
            r"methods\.descendants\.shapes\[0\]\.depth='deep'",
        ),
        (
            "methods.descendants.shapes=[{width:1,dept:2}]",
            r"methods\.descendants\.shapes\[0\]\.dept is not a key",
        ),
        (
            "+methods.descendants.strategies.x._target_=torch.nn.Identity",
            r"methods\.descendants\.strategies\.x\._target_='torch\.nn\.Identity': not a registered adaptation",
        ),
    ],
)
def test_bad_descendant_configs_are_refused_before_any_work(override, match, tmp_path):
    from conftest import TINY, compose

    from experiments.pipeline.config_check import check_config

    with pytest.raises(ConfigError, match=match):
        check_config(compose([*TINY, "+exp=[quickstart,descendants]", override], tmp_path))


def test_a_depth_that_leaves_no_inherited_block_is_refused_before_stage_3_trains(finished_run, tmp_path):
    from conftest import TINY, compose

    from experiments.pipeline.runner import run_pipeline

    cfg = compose([*TINY, "+exp=[quickstart,descendants]", "methods.descendants.shapes=[{width:1,depth:1}]",
                   "stage=[individual,report]", f"from_run={finished_run}"], tmp_path)  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"^methods\.descendants\.shapes\[0\]\.depth=1: the descendant needs"
    ):
        run_pipeline(cfg, tmp_path)
    assert not (tmp_path / "individual/results_raw.json").exists()


def test_the_readme_descendants_example_runs(finished_run, tmp_path, monkeypatch):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    m = re.search(r"<!-- api-example-descendants -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md has no python block after <!-- api-example-descendants -->"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEARNGENE_PT", str(finished_run / "learngene/seed_0/learngene.pt"))
    namespace: dict = {}
    exec(compile(m.group(1), "README.md", "exec"), namespace)  # noqa: S102
    half, wide, scratch = namespace["half"], namespace["wide_deep"], namespace["scratch"]
    assert half.num_parameters() < wide.num_parameters() == scratch.num_parameters()
    assert namespace["net"](namespace["images"]).shape[-1] == 5


def test_build_descendant_refuses_unbuildable_shapes_naming_the_argument():
    from learngene_core import build_descendant

    lg = vgg_learngene()
    with pytest.raises(ConfigError, match=r"^width=-1"):
        build_descendant(lg, 5, width=-1)
    with pytest.raises(ConfigError, match=r"^depth=1: the descendant needs"):
        build_descendant(lg, 5, depth=1, base_width=4)
    with pytest.raises(ConfigError, match=r"^strategy='bogus': not a registered adaptation"):
        build_descendant(lg, 5, width=2.0, strategy="bogus")
    with pytest.raises(ConfigError, match=r"^strategy='narrow': the shape w2 is not narrower"):
        build_descendant(lg, 5, width=2.0, strategy="narrow")
    net = build_descendant(lg, 5, width=2.0, depth="+1", strategy="widen+deepen", hidden=[16], base_width=4)
    assert [b.name for b in net.blocks][-2:] == ["conv6", "conv6+1"] and net.blocks[-1].out_channels == 32


def test_the_method_plans_every_applicable_strategy_and_skips_what_the_backbone_cannot():
    from experiments.methods.descendants import combinations

    strategies = [Widen(), Narrow(), DeepenIdentity(), Repeat(), Truncate()]
    names = lambda lg, shape: [[s.name for s in c] for c in combinations(lg, shape, strategies, 4, "k")]  # noqa: E731
    assert names(vgg_learngene(), Shape(2.0, "+1")) == [["widen", "deepen"], ["widen", "repeat"]]
    assert names(resnet_learngene(), Shape(2.0, "+1")) == [["widen", "repeat"]]  # no identity residual block
    assert names(resnet_learngene(), Shape(1.0)) == [[]]
    with pytest.raises(
        ConfigError, match=r"^methods\.descendants\.strategies: the shape w1-d\+1 \(k\) is deeper"
    ):
        combinations(resnet_learngene(), Shape(1.0, "+1"), [DeepenIdentity()], 4, "k")


@pytest.mark.parametrize("width", [0.5, 2.0])
def test_a_window_at_the_first_block_keeps_reading_the_images(width):
    from learngene_core import build_descendant

    torch.manual_seed(0)
    lg = extract_learngene(vgg(32, 3, 10, widths=[8, 8, 16], pool_after=(1, 2, 3), hidden=[16]), 0, 2)
    net = build_descendant(lg, 5, width=width, hidden=[16])
    assert net.blocks[0].in_channels == 3 and net(torch.randn(2, 3, 32, 32)).shape == (2, 5)
