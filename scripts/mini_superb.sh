#!/usr/bin/env bash
# `make mini-superb`: pretrain every CPU recipe on the embedded corpus, then score them all with audiossl-bench.
#
#   1. corpus + manifests (as make demo; skipped when present)
#   2. HuBERT targets: MFCC k-means on the encoders' 10 ms grid (audiossl-kmeans)
#   3. pretrain each recipe (conf/experiment/<objective>_tiny.yaml, each at most 30 min on 2 cores); HuBERT's
#      second iteration re-clusters a layer of the first and trains again
#   4. the clip-level sets (keyword spotting, accent ID; audiossl-keywords, audiossl-accents)
#   5. the supervised ceiling: HuBERT's tiny encoder trained end to end on frame phones (conf/recipe/phone_ceiling.yaml)
#   6. audiossl-bench over MFCC, fbank, a random encoder and every pretrained encoder, frame- and clip-level
#      tasks, with the ceiling row and every row's distance to it -> $OUT/report.md
#
# Every step resumes or skips when its output exists. Knobs (environment):
#   RUNS (runs/mini_superb)   where the pretraining runs go
#   OUT (reports/mini_superb) the bench report
#   PROFILE (quick)           bench profile: quick | full
#   OBJECTIVES ("cpc wav2vec2 apc cola hubert pase multiformat"; multiformat adds both of its branches)
set -euo pipefail
cd "$(dirname "$0")/.."

export TORCH_COMPILE_DISABLE=1 HYDRA_FULL_ERROR=0
BIN=.venv/bin
RUNS=${RUNS:-runs/mini_superb}
OUT=${OUT:-reports/mini_superb}
PROFILE=${PROFILE:-quick}
OBJECTIVES=${OBJECTIVES:-cpc wav2vec2 apc cola hubert pase multiformat}
CORPUS=data/synth
MANIFESTS=manifests/synth
started=$SECONDS

stage() {
  printf '\n=== [%s] %s (%d s elapsed)\n' "$(date +%H:%M:%S)" "$1" $((SECONDS - started))
}

stage "corpus and manifests"
$BIN/audiossl-synth out_dir=$CORPUS
if [ ! -f $MANIFESTS/train_10min.tsv ] || [ $CORPUS/corpus.json -nt $MANIFESTS/train_10min.tsv ]; then
  $BIN/audiossl-manifest corpus_dir=$CORPUS/LibriSpeech out_dir=$MANIFESTS
fi

upstreams=(mfcc fbank random)
for objective in $OBJECTIVES; do
  if [ "$objective" = hubert ]; then
    stage "HuBERT iteration 1: MFCC k-means targets, then pretraining -> $RUNS/hubert_it1"
    $BIN/audiossl-kmeans manifest_dir=$MANIFESTS label=km frame_stride=160 receptive_field=465
    $BIN/audiossl-pretrain +experiment=hubert_tiny run_dir=$RUNS/hubert_it1
    upstreams+=("$RUNS/hubert_it1")
    stage "HuBERT iteration 2: k-means of iteration 1's layer, then pretraining -> $RUNS/hubert"
    $BIN/audiossl-kmeans manifest_dir=$MANIFESTS features=$RUNS/hubert_it1 layer=2 label=km2 \
      frame_stride=160 receptive_field=465
    $BIN/audiossl-pretrain +experiment=hubert_tiny_it2 run_dir=$RUNS/hubert
  else
    stage "pretraining $objective -> $RUNS/$objective"
    $BIN/audiossl-pretrain +experiment=${objective}_tiny run_dir=$RUNS/$objective
  fi
  upstreams+=("$RUNS/$objective")
  [ "$objective" = multiformat ] && upstreams+=("$RUNS/$objective:spectrogram")
done

stage "clip-level sets: keyword spotting and accent ID"
$BIN/audiossl-keywords
$BIN/audiossl-accents

stage "supervised ceiling: the same encoder trained end to end on frame phones -> $RUNS/phone_ceiling"
$BIN/audiossl-finetune +recipe=phone_ceiling run_dir=$RUNS/phone_ceiling

stage "audiossl-bench ($PROFILE) -> $OUT"
list=$(IFS=,; echo "${upstreams[*]}")
random_from=${upstreams[3]}   # the random row has the first pretrained encoder's architecture (HuBERT's if trained)
[ -d "$RUNS/hubert_it1" ] && random_from=$RUNS/hubert_it1
tasks="[phone_frames,abx,speaker,phoneme,asr,speaker_crops,keywords,accent]"
$BIN/audiossl-bench "upstreams=[$list]" random_from=$random_from ceiling=$RUNS/phone_ceiling profile=$PROFILE \
  "tasks=$tasks" out_dir=$OUT
stage "done: $OUT/report.md"
