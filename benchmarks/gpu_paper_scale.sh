#!/usr/bin/env bash
# The whole paper-scale CIFAR pipeline on one GPU: 21 collective tasks x 100 epochs with growth and the
# gradient criterion, then 10 target tasks (5-way, 10 and 20 shots) for learngene, scratch, fine-tuning,
# the feature baselines and the meta-learners. Installs nothing: run it inside the project's environment.
# Writes every timing and accuracy to one JSON file ($OUT_JSON).
#
#   bash benchmarks/gpu_paper_scale.sh                                  # CIFAR-100 under data/cifar100
#   DATA="data=npz data.path=../shared/data/cifar100.npz" bash benchmarks/gpu_paper_scale.sh
#   TINY=1 bash benchmarks/gpu_paper_scale.sh      # tiny budget on CPU (digits unless DATA is set): checks it works
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
RUN_DIR=${RUN_DIR:-outputs/gpu_paper_scale/$(date +%Y%m%d-%H%M%S)}
OUT_JSON=${OUT_JSON:-$RUN_DIR/gpu_paper_scale.json}
if [ "${TINY:-0}" = 1 ]; then
  DATA=${DATA:-data=digits target.ways=3 collective.classes_per_task=3}
else
  DATA=${DATA:-data.root=data/cifar100 data.download=false}
fi
JUDGEMENT=${JUDGEMENT:-0}   # 1: also every inherited window (11 more models per task)

methods="[learngene,scratch,finetune,linear_probe,prototype,protonet,maml]"
[ "$JUDGEMENT" = 1 ] && methods="[learngene,scratch,judgement,finetune,linear_probe,prototype,protonet,maml]"

args=(+exp=cifar_fewshot budget=paper budget.target_tasks=10 budget.seeds=[0]
      "methods=$methods" logger=csv "paths.output_dir=$RUN_DIR")
# shellcheck disable=SC2206
args+=($DATA)
if [ "${TINY:-0}" = 1 ]; then
  args+=(trainer=cpu budget.collective_tasks=3 budget.collective_epochs=1 budget.width_mult=0.0625
         budget.target_tasks=2 budget.individual_epochs=2 budget.meta_episodes=4 budget.maml_iterations=2
         model.net.hidden=[64,64] individual_net.hidden=[64,64])
else
  args+=(trainer=gpu)
fi

start=$(date +%s.%N)
"$PY" experiments/run.py "${args[@]}" "$@"
end=$(date +%s.%N)

"$PY" - "$RUN_DIR" "$OUT_JSON" "$start" "$end" <<'PYEOF'
import json, sys, platform
from pathlib import Path
import torch
run, out, start, end = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
res = json.loads((run / "results.json").read_text())
manifest = json.loads((run / "collective" / "seed_0" / "manifest.json").read_text())
payload = {
    "wall_time_s": round(end - start, 1),
    "stage_time_s": json.loads((run / "timings.json").read_text())["total_s"],
    "collective_task_time_s": [e["time_s"] for e in manifest["tasks"]],
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    "torch": torch.__version__, "python": platform.python_version(),
    "budget": res["budget"], "protocol": res["protocol"], "learngene": res["learngene"],
    "accuracy": {shots: {r["method"]: {"mean": r["mean"], "ci95": r["ci95"], "n": r["n"], "paired": r["paired"],
                                       "train_time_s": r["train_time_s"]} for r in rows}
                 for shots, rows in res["tables"].items()},
    "collective": res["collective"]["per_seed"]["0"],
    "run_dir": str(run),
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(payload, indent=2) + "\n")
print(json.dumps(payload, indent=2))
PYEOF
