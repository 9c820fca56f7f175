"""Data-loading throughput: AudioPipeline against a plain ``soundfile.read`` loop over the same files.

Both read every file of one manifest split once per pass; the figure is seconds of audio delivered per
second of wall time. Passes alternate (soundfile, pipeline, soundfile, ...) after one warm-up pass of
each, so page cache and machine load affect both alike; the medians and their ratio are printed.

The pipeline runs in padding mode with limits wide enough to keep every clip whole, so it delivers
exactly the audio the soundfile loop reads (checked) and the ratio compares like with like.

    python benchmarks/bench_pipeline.py                      # makes a 200-file corpus in a temp dir
    python benchmarks/bench_pipeline.py --manifest-dir manifests/librispeech --split dev_clean
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from audiossl.data.pipeline import AudioPipeline, DataConfig, load_manifest

RATE = 16_000


def make_corpus(directory: Path, num_files: int, seed: int = 0) -> Path:
    """Write ``num_files`` FLACs of 5-15 s (modulated tones + noise, so FLAC works as on speech) and a manifest."""
    rng = np.random.default_rng(seed)
    audio_dir = directory / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(num_files):
        length = int(rng.uniform(5, 15) * RATE)
        times = np.arange(length) / RATE
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * times)
        signal = 0.3 * envelope * np.sin(2 * np.pi * rng.uniform(100, 400) * times) + 0.05 * rng.standard_normal(length)
        name = f"utt{index:04d}.flac"
        soundfile.write(audio_dir / name, signal.astype(np.float32), RATE)
        rows.append(f"{name}\t{length}")
    (directory / "train.tsv").write_text("\n".join([str(audio_dir), *rows]) + "\n")
    return directory


def soundfile_pass(paths: list[str]) -> float:
    """Seconds of audio read by the plain loop (every file, manifest order)."""
    samples = 0
    for path in paths:
        samples += len(soundfile.read(path, dtype="float32")[0])
    return samples / RATE


def pipeline_pass(pipeline: AudioPipeline) -> float:
    return sum(batch.seconds for batch in pipeline)


def whole_clip_config(manifest_dir: str, split: str, num_parallel_calls: int, prefetch: int) -> DataConfig:
    """Padding mode with limits that keep every clip of the split, so both sides read the same audio."""
    longest = max(load_manifest(manifest_dir, split, []).sizes)
    return DataConfig(
        manifest_dir=manifest_dir, train_split=split, crop=False, shuffle=False, min_sample_size=1,
        max_sample_size=longest, max_batch_samples=8 * longest,
        num_parallel_calls=num_parallel_calls, prefetch=prefetch,
    )


def timed(run: object) -> tuple[float, float]:
    start = time.perf_counter()
    seconds = run()  # type: ignore[operator]
    return seconds, time.perf_counter() - start


def benchmark(args: argparse.Namespace) -> None:
    cfg = whole_clip_config(args.manifest_dir, args.split, args.num_parallel_calls, args.prefetch)
    table = load_manifest(args.manifest_dir, args.split, [])
    paths = [table.path(row) for row in range(len(table))]
    pipeline = AudioPipeline(cfg, args.split, train=False)
    runs = {"soundfile": lambda: soundfile_pass(paths), "pipeline": lambda: pipeline_pass(pipeline)}
    audio = {name: timed(run)[0] for name, run in runs.items()}  # warm-up pass of each
    if abs(audio["soundfile"] - audio["pipeline"]) > 1e-3:
        raise SystemExit(f"sides read different audio: {audio} (faults: {pipeline.fault_report().counts})")
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, run in runs.items():
            seconds, wall = timed(run)
            speeds[name].append(seconds / wall)
        print(f"pass {repeat + 1}/{args.repeats}: " + ", ".join(f"{n} {s[-1]:,.0f}x" for n, s in speeds.items()))
    report(len(paths), audio["soundfile"], cfg, {name: statistics.median(values) for name, values in speeds.items()})


def report(num_files: int, audio_seconds: float, cfg: DataConfig, medians: dict[str, float]) -> None:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n{num_files} files, {audio_seconds / 3600:.2f} h of audio; {os.cpu_count()} CPUs, load average {load}")
    print(f"pipeline: num_parallel_calls={cfg.num_parallel_calls}, prefetch={cfg.prefetch}, torch threads "
          f"{torch.get_num_threads()}")
    print("| reader | seconds of audio per second (median) |\n|---|---:|")
    for name, value in medians.items():
        print(f"| {name} | {value:,.0f} |")
    print(f"ratio pipeline / soundfile: {medians['pipeline'] / medians['soundfile']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest-dir", help="folder with {split}.tsv (default: make a corpus in a temp dir)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--num-parallel-calls", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--num-files", type=int, default=200, help="size of the generated corpus")
    parser.add_argument("--keep-corpus", help="write the generated corpus here instead of a temp dir")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.manifest_dir:
        benchmark(args)
        return
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(args.keep_corpus or scratch)
        print(f"writing {args.num_files} FLAC files of 5-15 s to {target} ...")
        args.manifest_dir, args.split = str(make_corpus(target, args.num_files)), "train"
        benchmark(args)


if __name__ == "__main__":
    main()
