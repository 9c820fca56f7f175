"""Time to quality: CPU minutes from scratch until a run's frozen features reach MFCC + 10 points on frame phones.

Updates are quality at this scale, so the speed users feel is how soon a run's features are good, not a step
time. Every step checkpoint a run kept (pretrain with ``trainer.keep_last=0``) is probed with the quick frame
phone probe of ``audiossl-bench``, in one bench run with MFCC beside them; the checkpoint's
``trainer.run_wall_seconds`` (training wall time, validation and saving included, summed over resumes) gives the
minutes. The crossing is interpolated linearly between the two checkpoints around it.

A quick probe costs about two minutes, so with ``--bisect`` only a coarse grid (multiples of ``--every`` and the
last checkpoint) is probed first; then, per run, the kept checkpoint halfway between the two probed ones around
the crossing, until they are neighbours; ``--grid-until`` stops that grid early, so a long run whose crossing
comes early costs its crossing and its final checkpoint. The bench saves each row, so every round probes only
the new ones.

    audiossl-pretrain +experiment=hubert_tiny run_dir=runs/ttq/hubert trainer.keep_last=0 trainer.save_every=500
    python benchmarks/time_to_quality.py --runs hubert=runs/ttq/hubert --out reports/time_to_quality

Runs trained before ``run_wall_seconds`` was logged have no clock and are refused by name.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

from audiossl.training.checkpoint import load_checkpoint, step_checkpoints

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def checkpoint_clock(run_dir: Path) -> list[tuple[int, float, Path]]:
    """(update, wall minutes, file) of every step checkpoint the run kept, in update order."""
    points = []
    for path in step_checkpoints(run_dir):
        trainer = load_checkpoint(path)["trainer"]
        if "run_wall_seconds" not in trainer:
            raise SystemExit(f"{path}: no trainer.run_wall_seconds (trained before it was logged); rerun the preset")
        points.append((trainer["step"], trainer["run_wall_seconds"] / 60.0, path))
    if not points:
        raise SystemExit(f"{run_dir}: no step checkpoints (pretrain with trainer.keep_last=0)")
    return points


def coarse_grid(points: list[tuple[int, float, Path]], every: int, until: int | None = None) -> set[int]:
    """The updates probed first: multiples of ``every`` (up to ``until``, when given) and the last checkpoint
    (the run's final quality). ``until`` bounds the probes of a long run whose crossing is known to come early."""
    return {step for step, _, _ in points
            if step % every == 0 and (until is None or step <= until)} | {points[-1][0]}


def next_probe(steps: list[int], probed: dict[int, float], target: float) -> int | None:
    """The kept update halfway between the probed ones around the first crossing; None once they are neighbours.

    ``steps`` are every kept update in order, ``probed`` the accuracy of those probed so far.
    """
    done = sorted(probed)
    above = next((step for step in done if probed[step] >= target), None)
    if above is None:
        return None
    below = max((step for step in done if step < above), default=0)
    between = [step for step in steps if below < step < above]
    return between[len(between) // 2] if between else None


def bench_phone_frames(upstreams: dict[str, Path], out_dir: Path, threads: int) -> dict[str, float]:
    """Best-layer dev frame phone accuracy of each upstream, MFCC included, from one quick bench run."""
    names = ["mfcc", *upstreams]
    command = [
        str(Path(sys.executable).with_name("audiossl-bench")),
        f"upstreams=[mfcc,{','.join(str(p) for p in upstreams.values())}]",
        f"names=[{','.join(names)}]",
        "tasks=[phone_frames]", f"out_dir={out_dir}", f"num_threads={threads}", "progress=false",
    ]
    subprocess.run(command, check=True)
    rows = json.loads((out_dir / "report.json").read_text(encoding="utf-8"))["rows"]
    return {row["upstream"]: row["scores"]["dev_accuracy"] for row in rows if row["task"] == "phone_frames"}


def crossing(points: list[tuple[int, float, float]], target: float) -> float | None:
    """Minutes at which accuracy first reaches ``target``, linear between checkpoints (None: never)."""
    previous = (0, 0.0, 0.0)
    for point in points:
        if point[2] >= target:
            (_, m0, a0), (_, m1, a1) = previous, point
            return m1 if a1 == a0 else m0 + (target - a0) * (m1 - m0) / (a1 - a0)
        previous = point
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="NAME=RUN_DIR, one per run")
    parser.add_argument("--out", required=True)
    parser.add_argument("--every", type=int, default=500, help="probe checkpoints at multiples of this update")
    parser.add_argument("--bisect", action="store_true",
                        help="then probe only the kept checkpoints that narrow each run's crossing")
    parser.add_argument("--grid-until", type=int,
                        help="with --bisect: the coarse grid stops at this update (the last checkpoint is still probed)")
    parser.add_argument("--margin", type=float, default=0.10, help="over MFCC, in accuracy (0.10 = 10 points)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.grid_until is not None and not args.bisect:
        parser.error("--grid-until bounds the --bisect grid; add --bisect")
    out = Path(args.out)
    kept = {name: checkpoint_clock(Path(run)) for name, run in (item.split("=", 1) for item in args.runs)}
    chosen = {name: coarse_grid(points, args.every, args.grid_until) if args.bisect else
              {step for step, _, _ in points if step % args.every == 0} for name, points in kept.items()}

    def probe() -> dict[str, float]:
        upstreams = {f"{name}@{step}": path for name, points in kept.items()
                     for step, _, path in points if step in chosen[name]}
        return bench_phone_frames(upstreams, out / "bench", args.threads)

    scores = probe()
    target = scores["mfcc"] + args.margin
    while args.bisect:
        more = {name: next_probe([step for step, _, _ in points], {s: scores[f"{name}@{s}"] for s in chosen[name]},
                                 target) for name, points in kept.items()}
        if all(step is None for step in more.values()):
            break
        for name, step in more.items():
            chosen[name] |= {step} - {None}
        scores = probe()
    clocks = {name: [point for point in points if point[0] in chosen[name]] for name, points in kept.items()}
    lines = [f"# Time to quality: frame phones >= MFCC + {100 * args.margin:.0f} = {100 * target:.1f} %", "",
             "| run | minutes to target | updates at target | final frame phones % | run minutes |",
             "|---|---:|---:|---:|---:|"]
    curves, summary = {}, {"mfcc": scores["mfcc"], "target": target, "runs": {}}
    for name, points in clocks.items():
        curve = [(step, minutes, scores[f"{name}@{step}"]) for step, minutes, _ in points]
        minutes = crossing(curve, target)
        reached = next((step for step, _, acc in curve if acc >= target), None)
        curves[name] = curve
        summary["runs"][name] = {"minutes_to_target": minutes, "curve": curve}
        shown = "not reached" if minutes is None else f"{minutes:.1f}"
        lines.append(f"| {name} | {shown} | {reached or '-'} | {100 * curve[-1][2]:.1f} | {curve[-1][1]:.1f} |")
    lines += ["", "Per checkpoint (update, wall minutes, frame phones %):", ""]
    lines += [f"- {name}: " + ", ".join(f"{s} / {m:.1f} / {100 * a:.1f}" for s, m, a in curve)
              for name, curve in curves.items()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "time_to_quality.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "time_to_quality.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    plot(curves, scores["mfcc"], target, out / "time_to_quality.png")
    print("\n".join(lines))


def plot(curves: dict[str, list[tuple[int, float, float]]], mfcc: float, target: float, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        axis.plot([m for _, m, _ in curve], [100 * a for _, _, a in curve], marker="o", label=name)
    axis.axhline(100 * mfcc, color="grey", linestyle=":", label="MFCC")
    axis.axhline(100 * target, color="black", linestyle="--", label="MFCC + margin")
    axis.set(xlabel="wall minutes on this machine", ylabel="frame phones % (best layer, dev)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
