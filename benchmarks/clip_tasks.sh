#!/usr/bin/env bash
# The README's clip-level table: every clip task (speaker ID on utterances and on 1 s crops, keyword spotting
# clean and corrupted, accent ID on unseen voices), profile=full (3 seeds: which crops/windows are drawn), for
# MFCC, fbank, two random encoders (COLA's GRU architecture and HuBERT's Transformer) and the pretrained runs.
# One bench run takes one random architecture, so the Transformer's random row is a second run into the same
# rows; the last step writes one report over all rows. About 15 minutes on 2 cores once the runs exist.
#
#   RUNS=runs/pretrain bash benchmarks/clip_tasks.sh      # expects cola_tiny, multiformat_tiny, pase_tiny, hubert_tiny
set -euo pipefail
cd "$(dirname "$0")/.."
export TORCH_COMPILE_DISABLE=1
BIN=.venv/bin
RUNS=${RUNS:-runs/pretrain}
OUT=${OUT:-reports/clip_tasks}
TASKS="[speaker,speaker_crops,keywords,accent]"

$BIN/audiossl-keywords
$BIN/audiossl-accents
$BIN/audiossl-bench \
  "upstreams=[mfcc,fbank,random,$RUNS/cola_tiny,$RUNS/multiformat_tiny,$RUNS/multiformat_tiny:spectrogram,$RUNS/pase_tiny,$RUNS/hubert_tiny]" \
  "names=[mfcc,fbank,random_gru,cola,multiformat_wave,multiformat_spec,pase,hubert]" random_from=$RUNS/cola_tiny \
  "tasks=$TASKS" profile=full out_dir=$OUT
$BIN/audiossl-bench "upstreams=[random]" "names=[random_transformer]" random_from=$RUNS/hubert_tiny \
  "tasks=$TASKS" profile=full out_dir=$OUT
$BIN/python - "$OUT" <<'EOF'
import sys
from pathlib import Path

from audiossl.bench.results import BenchRow
from audiossl.reports.bench import write_bench_report

out = Path(sys.argv[1])
order = ["mfcc", "fbank", "random_gru", "random_transformer", "cola", "multiformat_wave", "multiformat_spec",
         "pase", "hubert"]
tasks = ["speaker", "speaker_crops", "keywords", "accent"]
rows = [BenchRow.load(out / "rows" / f"{name}__{task}.json") for name in order for task in tasks]
print(write_bench_report(out, rows, "audiossl clip-level tasks (profile full, 3 seeds)", "dev_clean"))
EOF
