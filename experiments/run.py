"""Entry point: ``python experiments/run.py [+exp=NAME] [budget=small] [key=value ...]``.

With no ``+exp`` it runs the offline quickstart (every stage on scikit-learn's digits, tiny budget).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
if str(ROOT) not in sys.path:  # run from a checkout even without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="run")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from learngene.pipeline.runner import main_guarded

    result = main_guarded(cfg, HydraConfig.get().runtime.output_dir)
    return sweep_objective(result)


def sweep_objective(result: dict | None) -> float | None:
    """The value a Hydra sweeper optimises: learngene's mean accuracy at the first shot count."""
    if not result:
        return None
    for rows in result.get("tables", {}).values():
        for r in rows:
            if r["method"] == "learngene":
                return r["mean"]
    return None


if __name__ == "__main__":
    main()
