#!/usr/bin/env bash
# `make demo`: the whole audiossl story on a 2-core CPU in about 15 minutes, from a fresh clone.
#
#   1. build the embedded corpus (espeak-ng speech in the LibriSpeech layout)   skipped when already built
#   2. write fairseq manifests + the Libri-light-style 10-minute split          skipped when already written
#   3. pretrain a tiny encoder (HuBERT by default, after its MFCC k-means targets; OBJECTIVE=cpc|wav2vec2|apc|cola
#      make demo for the others)
#   4. letter CTC ASR on 10 minutes of labels, three systems with ONE recipe (conf/recipe/few_label_asr.yaml:
#      frozen upstream, weighted layer sum, BiLSTM CTC head): the pretrained encoder; a supervised fbank model
#      trained on the same labels alone (what a practitioner would otherwise train); a random encoder of the
#      same architecture
#   5. probe the frozen features of MFCC and the pretrained encoder: frame phones (a linear probe fitted on the
#      same 10 minutes of labels) and ABX; the README's mini-SUPERB fits on 1 hour, adds speaker ID and the
#      random encoder, at three to four times the demo's probing time
#   6. decode test-clean and test-other, greedy and with a 3-gram LM (its weights tuned on dev_clean per system),
#      into ONE report: WER table, probe table, learning curves with the dev CER of the three systems
#
# Every step resumes or skips when its output is there, so running it again is cheap. Knobs (environment):
#   OBJECTIVE (hubert)   pretraining objective: the experiment preset is conf/experiment/${OBJECTIVE}_tiny.yaml
#                        (hubert_denoise: HuBERT with WavLM's denoising, for noisy test audio)
#   DEMO_DIR (runs/demo)  where the runs go; the report goes to $DEMO_DIR/report_$OBJECTIVE
#   PRETRAIN_STEPS / FINETUNE_STEPS   override the demo's step counts (e.g. for a quicker look)
#   PRETRAINED=<checkpoint or run dir>   skip step 3 and fine-tune from an existing pretraining run instead
set -euo pipefail
cd "$(dirname "$0")/.."

export TORCH_COMPILE_DISABLE=1 HYDRA_FULL_ERROR=0
BIN=.venv/bin
OBJECTIVE=${OBJECTIVE:-hubert}
DEMO_DIR=${DEMO_DIR:-runs/demo}
CORPUS=data/synth
MANIFESTS=manifests/synth
PRETRAIN_DIR=${PRETRAINED:-$DEMO_DIR/pretrain_$OBJECTIVE}
FT_PRETRAINED=$DEMO_DIR/asr_10min_$OBJECTIVE
FT_RANDOM=$DEMO_DIR/asr_10min_random_$OBJECTIVE
FT_FBANK=$DEMO_DIR/asr_10min_fbank
REPORT=$DEMO_DIR/report_$OBJECTIVE
PROBES=$DEMO_DIR/probes_$OBJECTIVE
DEMO_PRETRAIN_STEPS=1500   # the preset's recipe, cut to fit the demo's 15 minutes (the preset runs 6000)
DEMO_FINETUNE_STEPS=200    # of the recipe's 600, to fit 15 minutes; short runs favour the pretrained row (README)
started=$SECONDS

stage() {  # stage NAME: print a banner with the elapsed time
  printf '\n=== [%s] %s (%d s elapsed)\n' "$(date +%H:%M:%S)" "$1" $((SECONDS - started))
}

[ -f "conf/experiment/${OBJECTIVE}_tiny.yaml" ] || {
  echo "error: OBJECTIVE=$OBJECTIVE has no preset conf/experiment/${OBJECTIVE}_tiny.yaml; choose one of:" \
       "$(ls conf/experiment | sed -n 's/_tiny\.yaml$//p' | tr '\n' ' ')" >&2
  exit 2
}

stage "1/6 embedded corpus -> $CORPUS"
$BIN/audiossl-synth out_dir=$CORPUS  # skips the build when corpus.json says the same corpus is there

stage "2/6 manifests -> $MANIFESTS"
if [ -f $MANIFESTS/train_10min.tsv ] && [ $MANIFESTS/train_10min.tsv -nt $CORPUS/corpus.json ]; then
  echo "manifests are up to date"
else
  $BIN/audiossl-manifest corpus_dir=$CORPUS/LibriSpeech out_dir=$MANIFESTS
fi

if [ -n "${PRETRAINED:-}" ]; then
  stage "3/6 pretraining: reusing PRETRAINED=$PRETRAINED"
else
  if [[ "$OBJECTIVE" == hubert* ]]; then  # hubert, hubert_denoise
    stage "3/6 HuBERT targets: MFCC k-means on the encoder's 10 ms grid -> $MANIFESTS/{train_clean,dev_clean}.km"
    $BIN/audiossl-kmeans manifest_dir=$MANIFESTS frame_stride=160 receptive_field=465
  fi
  stage "3/6 pretraining ($OBJECTIVE, tiny preset) -> $PRETRAIN_DIR"
  $BIN/audiossl-pretrain +experiment=${OBJECTIVE}_tiny run_dir=$PRETRAIN_DIR \
    trainer.max_steps=${PRETRAIN_STEPS:-$DEMO_PRETRAIN_STEPS}
fi

# One recipe for the three systems (conf/recipe/few_label_asr.yaml); only `init` differs.
RECIPE=(+recipe=few_label_asr data.manifest_dir=$MANIFESTS data.train_split=train_10min
        trainer.max_steps=${FINETUNE_STEPS:-$DEMO_FINETUNE_STEPS})

stage "4/6 few-label ASR on train_10min: frozen pretrained encoder -> $FT_PRETRAINED"
$BIN/audiossl-finetune "${RECIPE[@]}" init=$PRETRAIN_DIR run_dir=$FT_PRETRAINED

stage "4/6 few-label ASR on train_10min: supervised fbank baseline (no pretraining) -> $FT_FBANK"
$BIN/audiossl-finetune "${RECIPE[@]}" init=fbank run_dir=$FT_FBANK

stage "4/6 few-label ASR on train_10min: random encoder, same architecture -> $FT_RANDOM"
$BIN/audiossl-finetune "${RECIPE[@]}" init=random encoder_from=$PRETRAIN_DIR run_dir=$FT_RANDOM

stage "5/6 frozen-feature probes: MFCC and the pretrained encoder -> $PROBES"
$BIN/audiossl-bench "upstreams=[mfcc,$PRETRAIN_DIR]" "names=[mfcc,${OBJECTIVE}_pretrained]" \
  "tasks=[phone_frames,abx]" train_split=train_10min out_dir=$PROBES

stage "6/6 decoding test_clean + test_other (greedy, 3-gram LM tuned on dev_clean) -> $REPORT"
$BIN/audiossl-evaluate runs="[$FT_PRETRAINED,$FT_FBANK,$FT_RANDOM]" \
  names="[${OBJECTIVE}_pretrained,fbank_supervised,random_init]" \
  splits="[test_clean,test_other]" decoders="[greedy,lm]" out_dir=$REPORT bench=$PROBES \
  "lm.tune_lm_weights=[1,2,4]" "lm.tune_word_scores=[-4,-1,1]" \
  title="'Few-label ASR (10 min of labels): ${OBJECTIVE} pretraining vs a supervised fbank model vs random init'"

stage "done"
echo "report: $REPORT/report.md (also report.json, results.json and the PNG plots beside it)"
echo "total: $((SECONDS - started)) s"
