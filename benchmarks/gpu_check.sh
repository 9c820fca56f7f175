#!/usr/bin/env bash
# The GPU checks, prepared for the first GPU machine: one script, under 8 minutes on one H100, never in CI.
#
#   1. BASE wav2vec 2.0 pretraining step, ours vs HF Wav2Vec2ForPreTraining vs fairseq2, float32 and bf16
#      autocast: step time, ratios, share of the measured GEMM peak (MFU), peak memory
#   2. the demo's pipeline on the GPU, timed: HuBERT k-means targets, pretraining (hubert_tiny preset),
#      few-label fine-tuning (frozen upstream + BiLSTM) and evaluation (greedy + LM), peak GPU memory of each
#   3. with two or more GPUs: the same pretraining under `torchrun --nproc_per_node 2`
#
# Everything lands in $OUT (default runs/gpu_check): one log per step and summary.txt. DRY_RUN=1 runs every
# step on the CPU at toy sizes in about two minutes: it checks the script, not the GPU. The embedded corpus
# and its manifests must exist (`make demo` writes them; so does DRY_RUN on a machine that has none).
# PY (default .venv/bin/python) is the interpreter; on a machine whose Python lacks the packages, carry
# them as wheels and point PY at that Python (see the device notes).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/gpu_check}
RUNS=$OUT/runs
mkdir -p "$OUT" "$RUNS"
export TORCH_COMPILE_DISABLE=1 HYDRA_FULL_ERROR=1 PYTHONUNBUFFERED=1
if [ "${DRY_RUN:-0}" = 1 ]; then
  DEVICE=cpu BASE_ARGS="--encoder w2v2_tiny --batch 2 --seconds 1 --steps 1 --warmup 1 --threads 2"
  PRE_STEPS=6 FT_STEPS=4 SPLITS="[test_clean]" LM_GRID="lm.tune_lm_weights=[2.0] lm.tune_word_scores=[0.0]"
else
  DEVICE=cuda BASE_ARGS="--encoder w2v2_base --batch 8 --seconds 15 --steps 10 --warmup 3"
  PRE_STEPS=6000 FT_STEPS=600 SPLITS="[test_clean,test_other]" LM_GRID=""
fi
cli() { $PY -m "audiossl.cli.$1" "${@:2}"; }  # the audiossl-* commands, run by $PY
summary() { echo "$*" | tee -a "$OUT/summary.txt"; }
timed() {  # timed NAME COMMAND...: run, log to $OUT/NAME.log, record wall seconds and the exit status
  local name=$1 start=$SECONDS
  shift
  "$@" > "$OUT/$name.log" 2>&1
  local status=$?
  summary "$name: exit $status, $((SECONDS - start)) s"
  [ $status -eq 0 ] || tail -5 "$OUT/$name.log"
}
peak_memory() {  # the largest GPU memory any process held while the previous steps ran (nvidia-smi samples)
  [ -f "$OUT/nvidia_smi.csv" ] && sort -n "$OUT/nvidia_smi.csv" | tail -1 | sed 's/^/peak GPU memory used (MiB): /'
}

: > "$OUT/summary.txt"
summary "gpu_check $(date -u +%FT%TZ) device=$DEVICE dry_run=${DRY_RUN:-0}"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/summary.txt"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/nvidia_smi.csv" &
  SMI=$!
fi

timed base_fp32 $PY benchmarks/bench_pretrain.py --objectives wav2vec2 $BASE_ARGS --device $DEVICE \
  --json "$OUT/base_fp32.json"
timed base_bf16 $PY benchmarks/bench_pretrain.py --objectives wav2vec2 $BASE_ARGS --device $DEVICE --bf16 \
  --json "$OUT/base_bf16.json"
grep -h -E "ours|hf|fairseq2" "$OUT/base_fp32.log" "$OUT/base_bf16.log" | tee -a "$OUT/summary.txt"

[ -f manifests/synth/train_10min.tsv ] || {
  timed corpus cli synth out_dir=data/synth
  timed manifests cli manifest corpus_dir=data/synth/LibriSpeech out_dir=manifests/synth
}
[ -f manifests/synth/train_clean.km ] || timed kmeans cli kmeans frame_stride=160 receptive_field=465
timed pretrain cli pretrain +experiment=hubert_tiny run_dir=$RUNS/hubert_tiny trainer.max_steps=$PRE_STEPS \
  trainer.device=$DEVICE trainer.progress=false
timed finetune cli finetune +recipe=few_label_asr init=$RUNS/hubert_tiny data.train_split=train_10min \
  trainer.max_steps=$FT_STEPS trainer.device=$DEVICE trainer.progress=false run_dir=$RUNS/asr_10min
timed evaluate cli evaluate checkpoint=$RUNS/asr_10min "splits=$SPLITS" "decoders=[greedy,lm]" device=$DEVICE \
  out_dir=$RUNS/report $LM_GRID
grep -h -A4 "^| System" $RUNS/report/report.md 2>/dev/null | head -6 | tee -a "$OUT/summary.txt"

GPUS=$([ "$DEVICE" = cuda ] && nvidia-smi -L | wc -l || echo 0)
if [ "$GPUS" -ge 2 ]; then
  timed torchrun_pretrain $PY -m torch.distributed.run --nproc_per_node 2 -m audiossl.cli.pretrain \
    +experiment=hubert_tiny run_dir=$RUNS/hubert_tiny_ddp trainer.max_steps=$PRE_STEPS trainer.device=cuda \
    trainer.progress=false
else
  summary "torchrun: skipped ($GPUS GPU)"
fi
[ -n "${SMI:-}" ] && kill $SMI && peak_memory | tee -a "$OUT/summary.txt"
exit 0
