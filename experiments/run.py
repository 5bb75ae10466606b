"""Entry point: ``python experiments/run.py [+exp=NAME] [budget=small] [key=value ...]``.

With no ``+exp`` it runs the offline quickstart (every stage on scikit-learn's digits, tiny budget).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
if (
    str(ROOT) not in sys.path
):  # the top-level packages (experiments, lightning_modules, ...) live in the checkout
    sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from experiments.pipeline.resolvers import register_resolvers  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="run")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from experiments.pipeline.runner import main_guarded

    result = main_guarded(cfg, HydraConfig.get().runtime.output_dir)
    return sweep_objective(result, cfg.get("optimized_metric"))


def sweep_objective(result: dict | None, metric: str | None) -> float | None:
    """The value a Hydra sweeper optimises: the scalar ``optimized_metric`` names (see report_stage.scalars)."""
    if not result or not metric:
        return None
    from experiments.pipeline.report_stage import scalars

    return scalars(result).get(metric)


if __name__ == "__main__":
    main()
