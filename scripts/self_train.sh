#!/usr/bin/env bash
# `make self-train`: one round of self-training on top of `make few-label`'s 10-minute runs (Xu et al. 2021,
# "Self-training and pre-training are complementary"). Per seed, the 10-minute run of SYSTEM transcribes the
# rest of train_clean with the LM beam (audiossl-pseudolabel); a fresh head on the same frozen upstream then
# trains on the 10 minutes of real labels plus those transcripts, with the few-label recipe.
#
# The pseudo-labelling LM is built from the train_1h transcripts only, and train_1h's audio stays out of the
# pool, so the LM never knows the text of the audio it transcribes (an LM from train_clean would: the tool
# refuses it). The pool is the other 1251 utterances (1.05 h). Test decoding uses the same LM as every row.
#
# Knobs (environment): SYSTEM (run name prefix in OUT/train_10min: pretrained | denoise | fbank), INIT (the
# upstream, default PRETRAINED; fbank for SYSTEM=fbank), SEEDS ("1 2 3"), OUT (runs/few_label), STEPS (1800:
# the data is now ~1.2 h, as for train_1h). Running it again resumes every run.
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCH_COMPILE_DISABLE=1 HYDRA_FULL_ERROR=0
BIN=.venv/bin
SYSTEM=${SYSTEM:-pretrained}
PRETRAINED=${PRETRAINED:-runs/pretrain/hubert_tiny}
INIT=${INIT:-$PRETRAINED}
SEEDS=${SEEDS:-"1 2 3"}
OUT=${OUT:-runs/few_label}
MANIFESTS=${MANIFESTS:-manifests/synth}
STEPS=${STEPS:-1800}

runs=() names=()
for seed in $SEEDS; do
  teacher=$OUT/train_10min/${SYSTEM}_s$seed
  split=train_10min_st_${SYSTEM}_s$seed
  student=$OUT/self_training/${SYSTEM}_st_s$seed
  [ -e "$teacher/checkpoints/best.pt" ] || {
    echo "error: $teacher has no checkpoints/best.pt; run make few-label (SPLITS=train_10min) first" >&2
    exit 2
  }
  [ -e "$MANIFESTS/$split.tsv" ] || $BIN/audiossl-pseudolabel run=$teacher unlabeled=train_clean \
    "exclude=[train_1h]" lm.text_split=train_1h out_split=$split out_dir=$OUT/self_training/pseudo_${SYSTEM}_s$seed
  $BIN/audiossl-finetune +recipe=few_label_asr data.manifest_dir=$MANIFESTS data.train_split=$split \
    trainer.seed=$seed data.seed=$seed run_dir=$student trainer.max_steps=$STEPS init=$INIT
  runs+=($teacher $student)
  names+=("'$SYSTEM seed $seed'" "'$SYSTEM + self-training seed $seed'")
done
$BIN/audiossl-evaluate "runs=[$(IFS=,; echo "${runs[*]}")]" "names=[$(IFS=,; echo "${names[*]}")]" \
  splits="[test_clean,test_other]" decoders="[greedy,lm]" lm.beam_size=200 out_dir=$OUT/report_self_training_$SYSTEM \
  title="'Self-training on train_10min: $SYSTEM before and after one round, seeds $SEEDS'"
