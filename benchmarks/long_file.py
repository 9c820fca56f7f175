"""Transcribing long recordings: peak memory, speed and WER of windowed vs whole-file encoding.

A long "recording" is made by concatenating a manifest's utterances (their transcripts joined as the
reference), then transcribed with greedy CTC decoding by ``downstream.transcribe.file_log_probs``:
whole (``chunk_seconds=0``) and in windows (``Chunking``, the ``audiossl-transcribe`` default). Each
measurement runs in a fresh process, so its peak resident memory (``ru_maxrss``) is its own. The row
"per utterance" decodes every utterance alone, the way the manifests are scored.

    python benchmarks/long_file.py --model runs/few_label/train_10min/pretrained_s1 --minutes 0.5 1 2 10 \
        --whole-up-to 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import soundfile
import torch

from audiossl.asr.decode import GreedyDecoder
from audiossl.data.manifest import read_tsv
from audiossl.downstream.peer_ctc import load_any_finetuned
from audiossl.downstream.transcribe import Chunking, file_log_probs
from audiossl.metrics import wer_cer


def long_recording(manifest: str, minutes: float) -> tuple[torch.Tensor, str, list[tuple[torch.Tensor, str]]]:
    """Utterances of ``manifest`` (repeated when it is shorter) joined up to ``minutes``; their ``.wrd`` text."""
    root, rows = read_tsv(Path(manifest))
    words = open(manifest.replace(".tsv", ".wrd"), encoding="utf-8").read().splitlines()
    pieces, total, index = [], 0, 0
    while total < minutes * 60 * 16_000:
        audio, rate = soundfile.read(root / rows[index % len(rows)].relpath, dtype="float32")
        assert rate == 16_000, rate
        pieces.append((torch.from_numpy(audio), words[index % len(rows)]))
        total += len(audio)
        index += 1
    return torch.cat([p[0] for p in pieces]), " ".join(p[1] for p in pieces), pieces


def measure(args: argparse.Namespace) -> dict[str, object]:
    torch.set_num_threads(args.threads)
    task = load_any_finetuned(args.model)[0].eval()
    decoder = GreedyDecoder(task.vocab)
    waveform, reference, pieces = long_recording(args.manifest, args.measure_minutes)
    started = time.perf_counter()
    if args.mode == "per_utterance":
        texts = []
        for audio, _ in pieces:
            log_probs = file_log_probs(task, audio, 16_000, Chunking(seconds=0))
            texts.append(decoder(log_probs[None], torch.tensor([len(log_probs)]))[0])
        hypothesis = " ".join(texts)
    else:
        chunking = Chunking(seconds=0) if args.mode == "whole" else Chunking(args.chunk, args.context)
        log_probs = file_log_probs(task, waveform, 16_000, chunking)
        hypothesis = decoder(log_probs[None], torch.tensor([len(log_probs)]))[0]
    seconds = time.perf_counter() - started
    scores = wer_cer([reference], [hypothesis])
    return {"minutes": round(len(waveform) / 16_000 / 60, 2), "mode": args.mode,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "real_time_factor": seconds / (len(waveform) / 16_000), "wer": scores["wer"], "cer": scores["cer"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a fine-tuned CTC run or checkpoint")
    parser.add_argument("--manifest", default="manifests/synth/test_clean.tsv")
    parser.add_argument("--minutes", type=float, nargs="+", default=[0.5, 1, 2, 10])
    parser.add_argument("--whole-up-to", type=float, default=2.0, help="longest recording encoded whole (minutes)")
    parser.add_argument("--chunk", type=float, default=Chunking.seconds)
    parser.add_argument("--context", type=float, default=Chunking.context)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=["whole", "windows", "per_utterance"], help=argparse.SUPPRESS)
    parser.add_argument("--measure-minutes", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args)))
        return
    print("| minutes | encoding | peak RSS MB | real-time factor | WER % | CER % |\n|---:|---|---:|---:|---:|---:|")
    for minutes in args.minutes:
        modes = ["per_utterance", "windows"] + (["whole"] if minutes <= args.whole_up_to else [])
        for mode in modes:
            command = [sys.executable, __file__, *sys.argv[1:], "--mode", mode, "--measure-minutes", str(minutes)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"| {minutes} | {mode} | failed: {done.stderr.strip().splitlines()[-1:]} | | | |", flush=True)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"| {row['minutes']} | {mode} | {row['peak_rss_mb']:.0f} | {row['real_time_factor']:.4f} | "
                  f"{100 * row['wer']:.2f} | {100 * row['cer']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
