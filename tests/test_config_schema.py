"""The typed schema (experiments/pipeline/schema.py) and the one walker that checks the suite's nodes, every
``_target_``'s parameters (the stage-3 methods' options included) the same way, extensions included."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from conftest import compose
from omegaconf import OmegaConf

from experiments.pipeline.config_check import check_config
from experiments.pipeline.schema import Range
from learngene_core.errors import ConfigError


def nc(m, metric: Literal["euclidean", "cosine"], shrink: Annotated[float, Range(ge=0, le=1)]):
    """A nearest-centroid method with two options (planned only when the individual stage runs)."""
    return []


def test_an_extension_method_s_options_are_checked_like_the_suite_s_own(tmp_path):
    """A nearest-centroid method added as docs/design.md describes: its ``metric`` option refuses ``manhattan``
    without any central list being edited, and every problem of the config comes in one message."""
    from experiments.methods.registry import register_method, unregister_method

    register_method("nc", "nearest centroid (an extension)")(nc)
    target = ["+methods.nc._target_=test_config_schema.nc", "+methods.nc._partial_=true"]
    try:
        check_config(compose([*target, "+methods.nc.metric=cosine", "+methods.nc.shrink=0.5"], tmp_path))
        with pytest.raises(
            ConfigError, match=r"^methods.nc=\{'metric': 'cosine'\}: needs _target_ .*test_config_schema.nc"
        ):
            check_config(compose(["+methods.nc.metric=cosine"], tmp_path))
        with pytest.raises(ConfigError) as err:
            check_config(compose([*target, "+methods.nc.metric=manhattan", "+methods.nc.shrink=2",
                                  "+methods.nc.metrik=x", "collective.epochs=0", "collective.mode=joint",
                                  "collective.labels=relative"], tmp_path))  # fmt: skip
    finally:
        unregister_method("nc")
    lines = str(err.value).splitlines()
    assert lines[0] == "6 problems in the configuration:", lines
    assert set(lines[1:]) == {
        "  collective.epochs=0: must be an integer >= 1",
        "  methods.nc.metric='manhattan': valid values are ['euclidean', 'cosine']",
        "  methods.nc.shrink=2: must be a number >= 0 and <= 1",
        "  methods.nc.metrik is not a parameter of test_config_schema.nc; did you mean 'metric'?; valid: ['metric', "
        "'shrink']",
        "  collective.head='growing': task-relative labels use one shared head; set collective.head=fixed",
        "  collective.labels='relative': the joint ancestor learns all base classes at once: use global",
    }


def test_a_built_in_method_s_option_is_typed():
    with pytest.raises(ConfigError, match=r"^methods.prototype.metric='manhattan': valid values are "
                       r"\['euclidean', 'cosine'\]$"):  # fmt: skip
        check_config(compose(["methods.prototype.metric=manhattan"]))


def test_a_statistic_s_own_options_are_checked_against_its_signature(tmp_path):
    """A statistic declares its options as keyword-only parameters where it is registered; no central list."""
    from learngene_core.criterion.registry import register_statistic, unregister_statistic

    @register_statistic("toy_scaled", "step", "an extension statistic with two options")
    def toy_scaled(grad, weight, tau, *, scale: Annotated[float, Range(gt=0)] = 1.0,
                   reduce: Literal["mean", "max"] = "mean"):  # fmt: skip
        return scale * (grad.abs().mean() if reduce == "mean" else grad.abs().max())

    try:
        check_config(compose(["+criterion.options.toy_scaled.scale=2.5", "+criterion.options.toy_scaled.reduce=max"],
                             tmp_path))  # fmt: skip
        with pytest.raises(ConfigError) as err:
            check_config(compose(["+criterion.options.toy_scaled.scale=0", "+criterion.options.toy_scaled.reduse=max",
                                  "+criterion.options.toy_scaeld.scale=2", "+criterion.options.abs_frac.x=1",
                                  "+criterion.options.rel_norm._partial_=true"],
                                 tmp_path))  # fmt: skip
    finally:
        unregister_statistic("toy_scaled")
    lines = str(err.value).splitlines()
    assert lines[0] == "5 problems in the configuration:", lines
    unregistered = [x for x in lines[1:] if x.startswith("  criterion.options.toy_scaeld")]
    assert len(unregistered) == 1 and unregistered[0].startswith(
        "  criterion.options.toy_scaeld: 'toy_scaeld' is not a registered statistic; did you mean 'toy_scaled'?; "
        "registered: ['paper_signed_frac',"
    )
    assert set(lines[1:]) - set(unregistered) == {
        "  criterion.options.toy_scaled.scale=0: must be a number > 0",
        "  criterion.options.toy_scaled.reduse is not an option of statistic toy_scaled; did you mean 'reduce'?; "
        "options: ['reduce', 'scale']",
        "  criterion.options.abs_frac.x is not an option of statistic abs_frac; options: []",
        "  criterion.options.rel_norm._partial_ is not an option of statistic rel_norm; options: []",
    }


def source_with_own_key(image_size: int, split: str = "default", split_file: str | None = None,
                        fraction: float = 1.0):  # fmt: skip
    """A data source with a setting of its own (never called: the checks read its signature)."""
    raise AssertionError("not called by the config checks")


@pytest.mark.parametrize("resolve", [True, False])
def test_a_data_source_s_own_keys_are_accepted_resolved_or_not_and_typed(resolve, tmp_path):
    """run.py checks the config unresolved, as compose gives it by default; a resolved one (a saved, resolved
    config) is checked alike: the source's own key is allowed either way, its value typed by the source."""
    own = ["data.source._target_=test_config_schema.source_with_own_key", "+data.fraction=0.5",
           "+data.source.fraction=${data.fraction}"]  # fmt: skip
    check_config(compose(own, tmp_path, resolve=resolve))
    key = "data.source.fraction" if resolve else "data.fraction"  # resolved, the interpolation is gone
    with pytest.raises(ConfigError, match=rf"^{key}='half': must be a number$"):
        check_config(compose([own[0], "+data.fraction=half", own[2]], tmp_path, resolve=resolve))
    with pytest.raises(
        ConfigError, match=r"^data.fractoin is not a key the suite reads.*did you mean 'fraction'"
    ):
        check_config(compose([*own, "+data.fractoin=0.5"], tmp_path, resolve=resolve))


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["+exp=cifar_fewshot", "budget=small", "data=npz", "data.path=x.npz", "collective.mode=joint"],
        ["+exp=cifar_fewshot", "budget=paper"],
        ["+exp=[quickstart,descendants]"],
        ["+exp=miniimagenet_fewshot", "data.path=somewhere"],
        ["model=resnet12", "trainer=cpu_fast", "logger=many"],
    ],
)
def test_the_shipped_configs_fit_the_schema_stored_in_the_config_store(overrides, tmp_path):
    """OmegaConf's own structured merge of the composed config into ``schema/run`` (types, enums, unknown keys)
    accepts every shipped experiment: the YAML and the schema agree."""
    from hydra.core.config_store import ConfigStore

    schema = ConfigStore.instance().load("schema/run.yaml").node
    from experiments.pipeline.schema import Data

    schema.data = OmegaConf.structured(Data)
    OmegaConf.set_struct(schema.data, False)  # a data source adds keys of its own (data.path, data.root, ...)
    merged = OmegaConf.merge(
        schema, compose(overrides, tmp_path, resolve=True)
    )  # resolved: every value typed
    assert OmegaConf.get_type(merged.collective, "mode").__name__ == "Mode"
    with pytest.raises(Exception, match="epochz"):
        OmegaConf.merge(schema, compose([*overrides, "+collective.epochz=3"], tmp_path))


def test_a_value_a_builder_node_takes_from_another_key_is_named_by_that_key_once(tmp_path):
    """A DataModule's batch size is bounded by its own signature; interpolated from ``individual.batch_size``
    (``${..batch_size}``) or ``data.download`` (``${data.download}``), a bad value is one line naming the key the
    user set, and a node that repeats another (``joint_phases: ${.continual}``) is not reported twice."""
    for override, line in [
        ("individual.batch_size=0", "individual.batch_size=0: must be an integer >= 1"),
        ("individual.datamodule.batch_size=0", "individual.datamodule.batch_size=0: must be an integer >= 1"),
        ("collective.datamodule.continual.batch_size=0",
         "collective.datamodule.continual.batch_size=0: must be an integer >= 1"),
        ("data.download=maybe", "data.download='maybe': must be true or false"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as err:
            check_config(
                compose([override, *(["data=cifar100"] if "download" in override else [])], tmp_path)
            )
        assert str(err.value) == line


def test_a_broken_reference_in_a_builder_node_is_named_once(tmp_path):
    """A value of a _target_ node that does not resolve is named there; one that interpolates a missing value is
    named only where that value is set (data.path, not also data.source.path)."""
    for override, line in [
        ("individual.datamodule.batch_size=${..nope}",
         "individual.datamodule.batch_size cannot be resolved: Interpolation key 'nope' not found"),
        ("data=npz", "data.path is required but not set; pass data.path=VALUE on the command line"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as err:
            check_config(compose([override], tmp_path))
        assert str(err.value) == line


def test_statistic_modules_that_cannot_be_imported_are_named_together(tmp_path):
    with pytest.raises(ConfigError) as err:
        check_config(compose(["criterion.modules=[no_such_stats_a,no_such_stats_b]"], tmp_path))
    line = str(err.value).splitlines()[0 if "problems" not in str(err.value) else 1].strip()
    assert line.startswith(
        "criterion.modules=['no_such_stats_a', 'no_such_stats_b']: cannot import 'no_such_stats_a'"
    )
    assert "'no_such_stats_b' (ModuleNotFoundError" in line and "PYTHONPATH" in line


def test_a_builder_node_made_by_a_resolver_is_still_checked_against_its_target(tmp_path):
    """A node that only repeats another one (``joint_phases: ${.continual}``) is checked once, where it is written;
    one a resolver makes is checked as itself."""
    from omegaconf import open_dict

    cfg = compose([], tmp_path)
    with open_dict(cfg):
        cfg.collective.datamodule.joint = (
            "${oc.create:{_target_: datamodules.joint_stream.JointDataModule, _partial_: true, bogus: 1}}"
        )
    with pytest.raises(ConfigError, match=r"collective.datamodule.joint.bogus is not a parameter"):
        check_config(cfg)


def test_the_augmentation_is_built_from_its_target_and_its_values_checked(tmp_path):
    """``data.augment`` is a partial BatchAugment: its type and bounds come from BatchAugment's own signature
    (``Annotated[int, Range(ge=0, le=64)]``), and what the suite passes when it builds it cannot be set."""
    from experiments.pipeline.context import RunContext
    from learngene_core.data.augmentation import BatchAugment

    augment = RunContext(compose([], tmp_path), tmp_path).augment
    assert isinstance(augment, BatchAugment) and augment.crop_padding == 2 and not augment.flip
    with pytest.raises(ConfigError) as err:
        check_config(compose(["data.augment.flip=maybe", "data.augment.crop_padding=100", "+data.augment.std=[1]"],
                             tmp_path))  # fmt: skip
    assert set(str(err.value).splitlines()[1:]) == {
        "  data.augment.flip='maybe': must be true or false",
        "  data.augment.crop_padding=100: must be an integer >= 0 and <= 64",
        "  data.augment.std is passed by the suite when it builds data.augment (it would be overwritten); remove it",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.num_nodes=0"], r"^trainer.num_nodes=0: must be an integer >= 1$"),
        (["+individual.datamodule.tasks=[]"], r"^individual.datamodule.tasks is passed by the suite"),
        (["+criterion.rule.k=9"], r"^criterion.rule.k is passed by the suite"),
        (
            ["+collective.datamodule.joint.plan=1"],
            r"^collective.datamodule.joint.plan is passed by the suite",
        ),
        (["+data.channels=1"], r"^data.channels is not a key the suite reads"),  # the source does not read it
        (
            ["data=imagefolder"],
            r"^data.path is required but not set; pass data.path=VALUE on the command line$",
        ),
        (
            ["collective.ewc.penalty.lam=5"],
            None,
        ),  # valid: a penalty other than the flat keys (see fingerprint)
    ],
)
def test_values_the_suite_would_overwrite_or_ignore_are_refused(overrides, message, tmp_path):
    if message is None:
        check_config(compose(overrides, tmp_path))
        return
    with pytest.raises(ConfigError, match=message):
        check_config(compose(overrides, tmp_path))


def test_builder_nodes_leave_stage_one_fingerprints_as_earlier_runs_recorded_them(tmp_path):
    """``data.augment``, ``collective.datamodule`` and ``collective.ewc.penalty`` gained a ``_target_``; a collective
    run recorded before still resumes (the CIFAR study's joint runs too, checked by hand): while they build the default classes, the fingerprint holds only the values they are built
    from (the quickstart's digest of commit d0764ef, ebe239c70221ace0, is reproduced exactly)."""
    from experiments.pipeline.collective.setup import fingerprint

    fp = fingerprint(compose([], tmp_path), 0)
    assert fp["config"]["data"]["augment"] == {"crop_padding": 2, "flip": False}
    assert "penalty" not in fp["config"]["collective"]["ewc"]
    assert fp["digest"] == "ebe239c70221ace0"
    other = fingerprint(compose(["collective.ewc.penalty._target_=test_config_schema.OtherEWC"], tmp_path), 0)
    stronger = fingerprint(compose(["collective.ewc.penalty.lam=5"], tmp_path), 0)
    batches = fingerprint(compose(["collective.datamodule.continual.batch_size=32"], tmp_path), 0)
    digests = {fp["digest"], other["digest"], stronger["digest"], batches["digest"]}
    assert len(digests) == 4  # another class, strength or batch: not resumed
    assert "datamodule" not in fp["config"]["collective"]
    # a statistic's options change what stage 1 records; an empty entry sets nothing
    assert fingerprint(compose(["+criterion.options.abs_frac={}"], tmp_path), 0)["digest"] == fp["digest"]
    with_option = fingerprint(compose(["+criterion.options.abs_frac.x=1"], tmp_path), 0)
    assert with_option["config"]["criterion"]["options"] == {"abs_frac": {"x": 1}}


class OtherEWC:
    def __init__(self, lam: float, gamma: float) -> None:
        self.lam, self.gamma = lam, gamma


def test_stage_three_methods_receive_values_not_the_run_config():
    """Below the individual stage, methods and their helpers read ``ctx.individual`` (typed settings, read from
    the config in one place: experiments/methods/settings.py), never the run's config node."""
    import re

    from conftest import ROOT

    for path in sorted((ROOT / "experiments" / "methods").glob("*.py")):
        if path.name != "settings.py":
            assert not re.search(r"\b(ctx|run|m)\.(run\.)?cfg\b", path.read_text()), path


def test_a_run_without_methods_passes_the_data_limits(tmp_path):
    """``methods=[]`` (a collective-only run) leaves no methods node; the data limits do not trip over it."""
    from conftest import make_image_set

    from experiments.pipeline.config_check import check_data_limits

    cfg = compose(["methods=[]", "stage=[collective,learngene]"], tmp_path)
    check_config(cfg)
    check_data_limits(cfg, make_image_set(per_class_train=60))


@pytest.mark.parametrize(
    ("removed", "message"),
    [
        ("~criterion.statistic", r"criterion.statistic=None: valid values are \['paper_signed_frac'"),
        ("~data.mean", r"data.mean=None: must be 'auto'"),
        ("~stage", r"stage=\[\]: must list at least one of"),
    ],
)
def test_a_removed_key_with_a_check_function_is_refused_before_any_work(removed, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        check_config(compose([removed], tmp_path))
