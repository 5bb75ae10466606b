"""A criterion statistic outside the suite's package: registered when ``criterion.modules=[toy_statistic]`` imports
this module (tests/test_extending.py), with no edit to the suite."""

from learngene_core.criterion.registry import register_statistic


@register_statistic("toy_depth", "task", "a planted statistic: lowest for the three blocks from `start`")
def toy_depth(probe, *, start: int = 0):  # its own option, set as criterion.options.toy_depth.start
    return [0.0 if start <= i <= start + 2 else 1.0 + i for i in range(len(probe.start_weights))]
