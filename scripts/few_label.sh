#!/usr/bin/env bash
# `make few-label`: the README's few-label ASR table. One recipe (conf/recipe/few_label_asr.yaml), three systems
# that differ only in `init`, each split of labels, several seeds; then one report per split with the spread.
#
#   pretrained   the frozen pretrained encoder (PRETRAINED, default the hubert_tiny preset's run)
#   fbank        the supervised baseline: the same BiLSTM CTC model on log-mel filterbanks, trained on the labels alone
#   random       a frozen random encoder of the pretrained architecture (seeded per run)
#   fused        the pretrained encoder with the fbank frames appended to each layer (fuse=fbank): what a clean,
#                small pretraining left out, the spectrum still carries (README "Few-label ASR")
#
# Knobs (environment): PRETRAINED, SPLITS ("train_10min train_1h"), SEEDS ("1 2 3"), OUT (runs/few_label),
# STEPS (updates per run; unset: 600 for train_10min, the recipe's value, and 1800 for train_1h, where 600 updates
# are 7 epochs and dev CER was still falling: README "Few-label ASR"), LM_TEXT (the LM's text file; unset: the
# train_clean transcripts; the Libri-light protocol's LM corpus stand-in, text no audio reads:
# `python benchmarks/grammar_lm_text.py --out runs/lm_text.txt`), LM_BEAM (lm.beam_size, default 50).
# Running it again resumes every run.
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCH_COMPILE_DISABLE=1 HYDRA_FULL_ERROR=0
BIN=.venv/bin
PRETRAINED=${PRETRAINED:-runs/pretrain/hubert_tiny}
SPLITS=${SPLITS:-"train_10min train_1h"}
SEEDS=${SEEDS:-"1 2 3"}
OUT=${OUT:-runs/few_label}
MANIFESTS=${MANIFESTS:-manifests/synth}
[ -e "$PRETRAINED" ] || {
  echo "error: PRETRAINED=$PRETRAINED does not exist; pretrain first (audiossl-pretrain +experiment=hubert_tiny)" >&2
  exit 2
}

declare -A SPLIT_STEPS=([train_1h]=1800)

finetune() {  # finetune RUN_DIR SPLIT SEED init=... [more overrides]; a finished run resumes at its end
  local run_dir=$1 split=$2 seed=$3
  local steps=${STEPS:-${SPLIT_STEPS[$split]:-}}
  shift 3
  $BIN/audiossl-finetune +recipe=few_label_asr data.manifest_dir=$MANIFESTS data.train_split=$split \
    trainer.seed=$seed data.seed=$seed run_dir=$run_dir ${steps:+trainer.max_steps=$steps} "$@"
}

for split in $SPLITS; do
  runs=() names=()
  for seed in $SEEDS; do
    finetune $OUT/$split/pretrained_s$seed $split $seed init=$PRETRAINED
    finetune $OUT/$split/fbank_s$seed $split $seed init=fbank
    finetune $OUT/$split/random_s$seed $split $seed init=random encoder_from=$PRETRAINED
    finetune $OUT/$split/fused_s$seed $split $seed init=$PRETRAINED fuse=fbank
    runs+=($OUT/$split/pretrained_s$seed $OUT/$split/fbank_s$seed $OUT/$split/random_s$seed $OUT/$split/fused_s$seed)
    names+=("'pretrained seed $seed'" "'fbank supervised seed $seed'" "'random init seed $seed'"
            "'pretrained + fbank fused seed $seed'")
  done
  $BIN/audiossl-evaluate "runs=[$(IFS=,; echo "${runs[*]}")]" "names=[$(IFS=,; echo "${names[*]}")]" \
    splits="[test_clean,test_other]" decoders="[greedy,lm]" out_dir=$OUT/report_$split \
    ${LM_TEXT:+lm.text=$LM_TEXT} ${LM_BEAM:+lm.beam_size=$LM_BEAM} \
    title="'Few-label ASR on $split: frozen pretrained encoder (alone and fused with fbank) vs supervised fbank vs random init, seeds $SEEDS'"
done
