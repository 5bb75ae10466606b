#!/usr/bin/env bash
# The CIFAR-100 study at budget=small (README "Results on real data"), one run after another, each resumable:
# rerunning this script skips what finished and resumes what was interrupted. Stage-3 computations that do not
# depend on the ancestor (scratch for every window, the meta-learners) are shared through one cache.
#
#   STUDY=outputs/study_small DATA=../shared/data/cifar100.npz bash scripts/study/cifar_small.sh [RUN ...]
#
# RUN names one of the runs below (default: all, in order). CACHE: the stage-3 cache (default $STUDY/stage3_cache).
# TRAINER=cpu_fast runs them on the fast CPU path
# (parity with fp32: docs/benchmarks.md). CORES=0 or CORES=1 pins the run to one core with one thread, so that
# two runs can share a 2-core machine (bash scripts/study/cifar_small.sh A & CORES=1 ... B).
set -euo pipefail
cd "$(dirname "$0")/../.."
STUDY=${STUDY:-outputs/study_small}
DATA=${DATA:-../shared/data/cifar100.npz}
TRAINER=${TRAINER:-cpu}
PY=${PYTHON:-python}
CACHE=${CACHE:-$STUDY/stage3_cache}
mkdir -p "$STUDY"
NO_JUDGEMENT="'methods=[learngene,scratch]'"

declare -A RUNS=(
  # both ancestors, three collective seeds, every method and the judgement (lower_pools=paper, the paper's layout)
  [continual]="collective.mode=continual 'collective.seeds=[0,1,2]'"
  [joint]="collective.mode=joint 'collective.seeds=[0,1,2]'"
  # the second budget: 2 epochs per task instead of 5, one collective seed each
  [continual_e2]="collective.mode=continual budget.collective_epochs=2"
  [joint_e2]="collective.mode=joint budget.collective_epochs=2"
  # the inherited blocks at the resolution they were trained at (lower_pools=match), stage 1 reused: learngene and
  # scratch (lower_pools changes every stage-3 computation's key, so any other method would be computed again; the
  # judgement is three quarters of stage 3), so the comparison with `paper` is for the rule's window
  [continual_match]="collective.mode=continual individual_net.lower_pools=match from_run=$STUDY/continual 'collective.seeds=[0,1,2]' 'stage=[individual,report]' $NO_JUDGEMENT"
  [joint_match]="collective.mode=joint individual_net.lower_pools=match from_run=$STUDY/joint 'collective.seeds=[0,1,2]' 'stage=[individual,report]' $NO_JUDGEMENT"
  # descendants of six sizes from one ancestor (the joint one, collective seed 0): the criterion's window (the
  # paper's, conv11-conv13) and a low window chosen on the validation tasks (conv1-conv3, criterion.window=0: the
  # choice at 20 shots; at 10 shots it was the neighbouring conv2-conv4)
  [descendants]="collective.mode=joint from_run=$STUDY/joint 'collective.seeds=[0]' 'stage=[learngene,individual,report]' 'exp=[cifar_fewshot,descendants]'"
  [descendants_low]="collective.mode=joint from_run=$STUDY/joint 'collective.seeds=[0]' 'stage=[learngene,individual,report]' 'exp=[cifar_fewshot,descendants]' criterion.window=0"
)
ORDER=(continual joint continual_e2 joint_e2 continual_match joint_match descendants descendants_low)

pin=()
if [[ -n "${CORES:-}" ]]; then
  export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
  pin=(taskset -c "$CORES")
fi
for name in "${@:-${ORDER[@]}}"; do
  [[ -n "${RUNS[$name]:-}" ]] || { echo "unknown run $name; runs: ${ORDER[*]}" >&2; exit 2; }
  echo "[$(date -Is)] $name at $(git rev-parse --short HEAD)" | tee -a "$STUDY/study.log"
  # the run's own log: $STUDY/<run>/run.log; its console output: $STUDY/<run>.log
  eval "${pin[*]} $PY experiments/run.py +exp=cifar_fewshot budget=small data=npz data.path=$DATA \
    trainer=$TRAINER individual.cache_dir=$CACHE paths.output_dir=$STUDY/$name logger=csv \
    ${RUNS[$name]}" >> "$STUDY/$name.log" 2>&1 || { echo "$name failed: see $STUDY/$name.log" >&2; exit 1; }
  echo "[$(date -Is)] $name finished" | tee -a "$STUDY/study.log"
done
