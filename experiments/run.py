"""Entry point: ``python experiments/run.py [+exp=NAME] [budget=small] [key=value ...]``.

With no ``+exp`` it runs ``+exp=quickstart``, the offline quickstart (every stage on scikit-learn's digits, tiny
budget; experiments/pipeline/default_experiment.py).
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

from experiments.pipeline.default_experiment import prepare_command_line  # noqa: E402
from experiments.pipeline.resolvers import register_resolvers  # noqa: E402
from learngene_core.errors import ConfigError  # noqa: E402

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="run")
def main(cfg: DictConfig) -> float | None:
    """Hydra has composed ``cfg``; ``main_guarded`` checks it, logs the plan, runs the stages of ``cfg.stage``
    (experiments/pipeline/runner.py: ``STAGE_FUNCTIONS``) and returns the sweep's objective."""
    from hydra.core.hydra_config import HydraConfig

    from experiments.pipeline.runner import main_guarded

    return main_guarded(cfg, HydraConfig.get().runtime.output_dir)


if __name__ == "__main__":
    if not any(a.startswith(("-sc", "--shell-completion")) for a in sys.argv[1:]):
        try:  # a moved key is refused with where it is now; no experiment named: the quickstart
            sys.argv[1:] = prepare_command_line(sys.argv[1:])
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    main()
