"""Paired statistics with the target task as the unit, tested by simulation with a known truth and against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from conftest import TINY, compose

from experiments.pipeline.report.analysis import _paired, _summary, gather_entries
from learngene_core.metrics.stats import paired_over_tasks, spearman, two_level_mean

SEEDS, TASKS = 3, 10  # collective seeds x target tasks, as in a study with 5 tasks x 2 seeds


def study(
    rng, gain: float, seed_sd: float = 0.0, tasks: int = TASKS, seeds: int = SEEDS
) -> tuple[dict, list, list]:
    """A synthetic stage-3 results file: one scratch computation shared by every collective seed (it does not
    depend on the ancestor) and one learngene computation per collective seed, both with task difficulty and
    equal noise; the learngene's true gain is ``gain`` plus a per-seed ancestor effect of sd ``seed_sd``."""
    difficulty = rng.normal(0.55, 0.1, tasks)
    noise = 0.03

    def comp(acc):
        return {"tasks": [{"seed": t // 5, "task": t % 5, "acc": float(a), "train_time_s": 1.0}
                          for t, a in enumerate(acc)], "info": {}}  # fmt: skip

    raw = {"computations": {"S": comp(difficulty + rng.normal(0, noise, tasks))}}
    learngene, scratch = [], []
    for cs in range(seeds):
        raw["computations"][f"L{cs}"] = comp(
            difficulty + gain + rng.normal(0, seed_sd) + rng.normal(0, noise, tasks)
        )
        learngene.append({"method": "learngene", "computation": f"L{cs}", "collective_seed": cs})
        scratch.append({"method": "scratch", "computation": "S", "collective_seed": cs})
    return raw, learngene, scratch


def paired_of(raw, learngene, scratch) -> dict:
    return _paired(gather_entries(raw, learngene), gather_entries(raw, scratch), "scratch")


@pytest.mark.parametrize("seed_sd", [0.0, 0.02])
def test_null_false_positive_rate_is_nominal_with_a_shared_scratch(seed_sd):
    """1,000 studies with no true gain, through the suite's own gather_entries / _paired: the 95 % interval
    excludes 0 in about 5 % of them. Counting the shared scratch once per collective seed (n = 30) gives ~17 %
    without and ~30 % with an ancestor effect."""
    rng = np.random.default_rng(1)
    hits, counted_per_seed = 0, 0
    for _ in range(1000):
        raw, lg, sc = study(rng, 0.0, seed_sd)
        p = paired_of(raw, lg, sc)
        assert p["n"] == TASKS and p["collective_seeds"] == SEEDS and p["unit"] == "target task"
        hits += abs(p["mean_diff"]) > p["ci95"]
        d = [raw["computations"][e["computation"]]["tasks"][t]["acc"] - raw["computations"]["S"]["tasks"][t]["acc"]
             for e in lg for t in range(TASKS)]  # fmt: skip
        naive = scipy.stats.ttest_1samp(d, 0.0)
        counted_per_seed += naive.pvalue < 0.05
    assert 0.03 <= hits / 1000 <= 0.07, hits
    assert counted_per_seed / 1000 > 0.12  # the old unit: the simulation can tell them apart


def test_a_known_gain_is_recovered_within_its_interval():
    rng = np.random.default_rng(2)
    covered, means = 0, []
    for _ in range(400):
        p = paired_of(*study(rng, 0.04, seed_sd=0.01))
        covered += abs(p["mean_diff"] - 0.04) <= p["ci95"]
        means.append(p["mean_diff"])
        assert (
            p["p_wilcoxon"] is None and p["between_seed_sd"] is not None
        )  # several ancestors: p is the test
    assert 0.91 <= covered / 400 <= 0.99
    assert np.mean(means) == pytest.approx(0.04, abs=0.003)
    # a worse method gives a negative (signed) difference, and a significant one here
    p = paired_of(*study(np.random.default_rng(3), -0.06))
    assert p["mean_diff"] < 0 and p["mean_diff"] + p["ci95"] < 0 and p["p"] < 0.05


def test_one_row_is_the_paired_t_test_and_wilcoxon_of_scipy():
    """With one row (one collective seed, or a pair that every seed shares) the estimate is scipy's paired t
    test over tasks, and p_wilcoxon is scipy's two-sided Wilcoxon, on data with negative differences."""
    a = np.array([0.52, 0.61, 0.48, 0.70, 0.55, 0.43, 0.66, 0.59])
    b = np.array([0.58, 0.60, 0.55, 0.71, 0.63, 0.50, 0.64, 0.66])
    p = paired_over_tasks([a - b])
    t = scipy.stats.ttest_rel(a, b)
    assert p["mean_diff"] == pytest.approx((a - b).mean()) and p["mean_diff"] < 0
    assert p["p"] == pytest.approx(t.pvalue) and p["n"] == 8 and p["df"] == 7
    ci = t.confidence_interval(0.95)
    assert p["ci95"] == pytest.approx((ci.high - ci.low) / 2)
    assert p["p_wilcoxon"] == pytest.approx(scipy.stats.wilcoxon(a - b, alternative="two-sided").pvalue)
    assert p["p_wilcoxon"] != pytest.approx(scipy.stats.wilcoxon(a - b, alternative="less").pvalue)


def test_several_seeds_average_per_task_and_widen_with_the_seed_effect():
    rng = np.random.default_rng(4)
    base = rng.normal(0, 0.03, (3, 10))
    p = paired_over_tasks(base)
    assert p["mean_diff"] == pytest.approx(base.mean()) and p["n"] == 10
    assert p["p_wilcoxon"] is None  # a rank test over per-task means would treat the 3 ancestors as fixed
    per_task = scipy.stats.ttest_1samp(base.mean(0), 0.0).confidence_interval(0.95)
    assert p["ci95"] >= (per_task.high - per_task.low) / 2 - 1e-12  # never narrower than over per-task means
    shifted = base + np.array([[-0.05], [0.0], [0.05]])  # a strong ancestor effect, same mean
    q = paired_over_tasks(shifted)
    assert q["mean_diff"] == pytest.approx(p["mean_diff"]) and q["ci95"] > 2 * p["ci95"]
    assert q["between_seed_sd"] == pytest.approx(shifted.mean(1).std(ddof=1))


def test_summary_counts_target_tasks_not_copies():
    rng = np.random.default_rng(5)
    raw, lg, sc = study(rng, 0.0)
    scratch, learngene = _summary(gather_entries(raw, sc)), _summary(gather_entries(raw, lg))
    assert scratch["n"] == TASKS and scratch["collective_seeds"] == 1 and len(scratch["accuracies"]) == TASKS
    assert learngene["n"] == TASKS and learngene["collective_seeds"] == SEEDS
    accs = [t["acc"] for t in raw["computations"]["S"]["tasks"]]
    assert scratch["mean"] == pytest.approx(np.mean(accs))
    assert scratch["ci95"] == pytest.approx(two_level_mean([accs])["ci95"])


def test_spearman_against_scipy_with_ties_and_monotone_non_linear_data():
    x = np.linspace(0, 4, 11)
    assert spearman(x, np.exp(3 * x)) == pytest.approx(1.0)  # Pearson would be well below 1 here
    assert scipy.stats.pearsonr(x, np.exp(3 * x)).statistic < 0.8
    a = [1, 2, 2, 3, 5, 5, 5, 8, 9, 9, 12]
    b = [3, -1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    assert spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)


def test_learngene_and_scratch_of_one_task_start_from_the_same_random_layers(monkeypatch):
    """The pairing is only fair if the two networks of a task differ in the inherited blocks alone: the same
    init seed builds the same lower blocks and head, and the same data seed draws the same batches."""
    from types import SimpleNamespace

    import experiments.methods.inherit as inherit
    from experiments.methods.common import data_seed
    from learngene_core.artifact import extract_learngene
    from learngene_core.backbones.base import BlockNet
    from learngene_core.backbones.vgg import vgg_spec
    from learngene_core.data.target_tasks import TargetTask

    cfg = compose(TINY)
    torch.manual_seed(0)
    widths = [4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16, 16]
    collective = BlockNet(vgg_spec(widths, input_size=32, hidden=[64, 64], num_classes=5))
    learngene = extract_learngene(collective, 10, 3)
    task = TargetTask(0, 1, 5, (0, 1, 2), torch.arange(15), torch.arange(3).repeat_interleave(5), "test",
                      torch.arange(6), torch.arange(3).repeat_interleave(2))  # fmt: skip
    built = {}

    def capture(ctx, build, tasks, inherited, name):
        built[bool(inherited)] = build(tasks[0])
        return []

    monkeypatch.setattr(inherit, "train_and_evaluate", capture)
    from experiments.methods.settings import IndividualSettings

    ctx = SimpleNamespace(individual=IndividualSettings.from_config(cfg))
    inherit.run_inherit(ctx, learngene, [task], True, "learngene")
    inherit.run_inherit(ctx, learngene, [task], False, "scratch")
    lg, sc = built[True], built[False]
    n_lower = len(lg.blocks) - len(learngene.blocks)
    for name, value in lg.state_dict().items():
        inherited_block = name.startswith("blocks.") and int(name.split(".")[1]) >= n_lower
        if not inherited_block:
            assert torch.equal(value, sc.state_dict()[name]), name
    assert not torch.equal(lg.blocks[n_lower].conv.weight, sc.blocks[n_lower].conv.weight)
    assert data_seed(task) == data_seed(TargetTask(*[getattr(task, f) for f in task.__dataclass_fields__]))


def test_wilcoxon_sees_ties_and_zeros_in_float_accuracies():
    """Accuracies are counts over a query set stored as float32: differences of the same number of correct answers
    must tie, and an equal pair must be a zero, as they are in exact arithmetic (here the signed ranks are
    symmetric, so p = 1; on the raw floats scipy ranked them apart and gave 0.80)."""
    import torch

    a = [46, 37, 33, 41, 30, 37, 49]
    b = [44, 39, 30, 43, 32, 35, 51]
    acc = lambda c: [float(torch.tensor(x / 75, dtype=torch.float32)) for x in c]  # noqa: E731
    exact = scipy.stats.wilcoxon(np.array(a) - np.array(b)).pvalue
    assert exact == pytest.approx(1.0)
    assert paired_over_tasks([np.array(acc(a)) - np.array(acc(b))])["p_wilcoxon"] == pytest.approx(exact)
    from learngene_core.metrics.stats import paired_difference

    assert paired_difference(acc(a), acc(b))["p_wilcoxon"] == pytest.approx(exact)
    same = [0.1 + 0.2, 0.7, 0.5]  # 0.30000000000000004 against 0.3: a zero, not a tiny difference
    assert paired_difference(same, [0.3, 0.7, 0.5])["p_wilcoxon"] is None
    # equal differences that straddle a decimal rounding boundary (10 more correct of 599: 0.016694 or 0.016695
    # in float32) still tie
    n = 599
    correct = [(10, 0), (11, 1), (12, 2), (70, 80), (75, 85), (81, 91), (203, 200)]  # 70, 75, 81: 0.016695
    x = np.array([float(torch.tensor(a / n, dtype=torch.float32)) for a, _ in correct])
    y = np.array([float(torch.tensor(b / n, dtype=torch.float32)) for _, b in correct])
    exact = scipy.stats.wilcoxon([a - b for a, b in correct]).pvalue
    assert paired_over_tasks([x - y])["p_wilcoxon"] == pytest.approx(exact)


def test_two_level_interval_equals_a_hand_anova_and_its_coverage_by_number_of_seeds():
    """The two-level estimate against sums of squares written out by hand, and its coverage with a known truth (no
    gain; seed, task and noise effects alike): nominal with 3 collective seeds; with 2 the seed variance has one
    degree of freedom and the interval covers about 90 %, as results.md says."""
    rng = np.random.default_rng(5)
    d = rng.normal(0.01, 0.03, (3, 6)) + np.array([[0.04], [0.0], [-0.03]])  # a seed effect: MS_A > MS_E
    S, T = d.shape
    grand = sum(map(sum, d)) / (S * T)
    seed_means = [sum(row) / T for row in d]
    task_means = [sum(d[s][t] for s in range(S)) / S for t in range(T)]
    ms_a = T * sum((m - grand) ** 2 for m in seed_means) / (S - 1)
    ms_b = S * sum((m - grand) ** 2 for m in task_means) / (T - 1)
    ms_e = sum((d[s][t] - seed_means[s] - task_means[t] + grand) ** 2 for s in range(S) for t in range(T))
    ms_e /= (S - 1) * (T - 1)
    assert ms_a > ms_e
    df = (ms_a + ms_b - ms_e) ** 2 / (ms_a**2 / (S - 1) + ms_b**2 / (T - 1) + ms_e**2 / ((S - 1) * (T - 1)))
    half = scipy.stats.t.ppf(0.975, df) * ((ms_a + ms_b - ms_e) / (S * T)) ** 0.5
    est = paired_over_tasks(d)
    assert est["df"] == pytest.approx(df) and est["ci95"] == pytest.approx(half)
    for seeds, low, high in ((3, 0.925, 0.97), (2, 0.87, 0.935)):
        covered = 0
        for _ in range(2000):
            grid = (
                rng.normal(0, 0.03, (seeds, 1))
                + rng.normal(0, 0.03, (1, 15))
                + rng.normal(0, 0.03, (seeds, 15))
            )
            est = paired_over_tasks(grid)
            covered += abs(est["mean_diff"]) <= est["ci95"]
        assert low <= covered / 2000 <= high, (seeds, covered)
