#!/usr/bin/env bash
# Does a change alter what training computes? Runs the same short jobs with the code at BASE (a commit, default
# HEAD) and with the working tree, then compares every checkpoint tensor (weights, optimizer moments, RNG and
# data position) and the evaluation results. Exit 0 only when all are bitwise identical.
#
#   bash benchmarks/behaviour_check.sh [BASE]        # after `make demo` (it reads manifests/synth)
#
# Jobs, 1 thread each: 12 updates of every pretraining preset (cpc, wav2vec2, apc, cola, hubert); from the
# hubert run, fine-tuning with the few-label recipe (frozen, BiLSTM), full fine-tuning with masking, and a
# frame-phone probe on fbank; then audiossl-evaluate (greedy + LM) on test_clean. About 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-HEAD}
WORK=${WORK:-runs/behaviour_check}
rm -rf "$WORK" && mkdir -p "$WORK"
git worktree add --detach "$WORK/base_tree" "$BASE" > /dev/null
trap 'git worktree remove --force "$WORK/base_tree"' EXIT
export TORCH_COMPILE_DISABLE=1 OMP_NUM_THREADS=1 HYDRA_FULL_ERROR=1
PY=$PWD/.venv/bin/python
M=$PWD/manifests/synth

jobs() {  # jobs CODE_ROOT OUT
  local root=$1 out=$2 steps="trainer.max_steps=12 trainer.save_every=6 trainer.validate_every=6 trainer.num_threads=1"
  # console scripts, not python -m: -m would put the working directory (this tree) before PYTHONPATH
  local run="env PYTHONPATH=$root AUDIOSSL_CONF=$root/conf $PWD/.venv/bin/audiossl"
  mkdir -p "$out"
  for exp in hubert_tiny wav2vec2_tiny cpc_tiny apc_tiny cola_tiny; do
    $run-pretrain +experiment=$exp $steps trainer.log_every=3 data.manifest_dir=$M \
      run_dir=$out/pre_$exp > $out/pre_$exp.log 2>&1
  done
  local init=$out/pre_hubert_tiny ft="data.manifest_dir=$M data.train_split=train_10min $steps"
  $run-finetune +recipe=few_label_asr init=$init $ft run_dir=$out/ft_frozen > $out/ft_frozen.log 2>&1
  $run-finetune init=$init $ft task.mode=finetune task.freeze_context_updates=4 \
    task.masking.time_prob=0.3 run_dir=$out/ft_full > $out/ft_full.log 2>&1
  $run-finetune init=fbank task=phone_frames $ft run_dir=$out/ft_phone > $out/ft_phone.log 2>&1
  $run-evaluate "runs=[$out/ft_frozen,$out/ft_full]" "splits=[test_clean]" "decoders=[greedy,lm]" \
    "lm.tune_lm_weights=[2.0]" "lm.tune_word_scores=[0.0,1.0]" out_dir=$out/eval > $out/eval.log 2>&1
}

echo "base ($(git rev-parse --short "$BASE"))..." && jobs "$PWD/$WORK/base_tree" "$PWD/$WORK/base"
echo "working tree..." && jobs "$PWD" "$PWD/$WORK/new"
$PY - "$WORK/base" "$WORK/new" <<'PY'
import json, sys
from pathlib import Path
import torch

CLOCKS = {"wall_seconds", "run_wall_seconds"}  # wall time differs between any two runs; nothing computed does

def differences(a, b, path=""):
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b) else [path]
    if isinstance(a, dict):
        if not isinstance(b, dict) or a.keys() - CLOCKS != b.keys() - CLOCKS:
            return [f"{path} (keys)"]
        return [d for k in a.keys() - CLOCKS if not (path == "" and k == "config")
                for d in differences(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return [f"{path} (length)"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [path]

base, new = Path(sys.argv[1]), Path(sys.argv[2])
failed = 0
for checkpoint in sorted(base.rglob("*.pt")):
    other = new / checkpoint.relative_to(base)
    found = differences(torch.load(checkpoint, weights_only=False), torch.load(other, weights_only=False)) \
        if other.exists() else ["(missing)"]
    print(("same " if not found else "DIFF ") + str(checkpoint.relative_to(base)), *found[:3])
    failed += bool(found)
found = differences(*(json.loads((root / "eval/results.json").read_text()) for root in (base, new)))
print(("same " if not found else "DIFF ") + "eval/results.json", *found[:3])
failed += bool(found)
print("ALL SAME" if not failed else f"{failed} DIFFERENCES")
sys.exit(1 if failed else 0)
PY
