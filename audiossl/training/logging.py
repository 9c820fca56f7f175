"""What a run tells the person watching it: a progress bar (plain lines when not on a terminal), TensorBoard scalars and a JSONL record per log step.

``metrics.jsonl`` is the machine-readable log (one object per line, ``split`` = ``train`` or ``valid``)
that reports and plots read; TensorBoard (``run_dir/tb``) is for looking at curves while training.
When a run resumes, records past the checkpoint step are dropped (JSONL lines rewritten, TensorBoard
``purge_step``) so curves never show the steps a killed process did twice.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from audiossl.progress import progress_bar, write_line

from audiossl.training.checkpoint import atomic_write_text

METRICS_FILE = "metrics.jsonl"
_NUMBER = re.compile(r"\d+(\.\d+)?(e-?\d+)?")
TENSORBOARD_SUBDIR = "tb"


class RunLogger:
    """Rank 0's view of the run; on other ranks (``enabled=False``) every method does nothing."""

    def __init__(
        self,
        run_dir: str | Path,
        total_steps: int,
        start_step: int,
        enabled: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._seen_warnings: set[str] = set()
        self._bar = progress_bar(
            total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, disable=not (enabled and progress)
        )
        self._writer = None
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _drop_records_after(self.run_dir / METRICS_FILE, start_step)
            self._jsonl = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
            if tensorboard:
                self._writer = _summary_writer(self.run_dir / TENSORBOARD_SUBDIR, start_step)

    def advance(self, step: int) -> None:
        """Move the bar to ``step`` (skipped updates leave it where it is)."""
        if self.enabled:
            self._bar.update(step - self._bar.n)

    def train(self, step: int, record: dict[str, Any]) -> None:
        """``record``: lr, loss, grad_norm, audio_sec_per_sec, nonfinite_steps, run_wall_seconds, epoch, metrics (a dict)."""
        if not self.enabled:
            return
        self._write({"step": step, "split": "train", **record})
        self._scalars("train", step, {k: v for k, v in record.items() if k != "metrics"} | record["metrics"])
        self._bar.set_postfix(
            loss=f"{record['loss']:.4g}", audio_s_per_s=f"{record['audio_sec_per_sec']:.0f}", lr=f"{record['lr']:.2e}"
        )

    def valid(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        self._write({"step": step, "split": "valid", "metrics": metrics})
        self._scalars("valid", step, metrics)
        self.message(f"step {step} valid: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))

    def message(self, text: str) -> None:
        """Print without tearing the progress bar."""
        if self.enabled:
            write_line(text)

    def warn_once(self, warnings: list[str]) -> None:
        """Objectives repeat a warning while the condition lasts; the reader needs it once.

        Warnings that differ only in their numbers ("code perplexity 2.1" / "2.3") count as the same one.
        """
        for warning in warnings:
            shape = _NUMBER.sub("#", warning)
            if shape not in self._seen_warnings:
                self._seen_warnings.add(shape)
                self.message(f"warning: {warning}")

    def close(self) -> None:
        self._bar.close()
        if self.enabled:
            self._jsonl.close()
            if self._writer is not None:
                self._writer.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._jsonl.write(json.dumps(record, allow_nan=True) + "\n")
        self._jsonl.flush()

    def _scalars(self, split: str, step: int, values: dict[str, Any]) -> None:
        if self._writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(f"{split}/{name}", value, step)
        self._writer.flush()


def _summary_writer(log_dir: Path, start_step: int) -> Any:
    """Imported lazily: tensorboard adds about a second of start-up that short tools do not need."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(log_dir), purge_step=start_step + 1 if start_step > 0 else None)


def _drop_records_after(path: Path, step: int) -> None:
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if (record := _parse(line)) is not None and record.get("step", 0) <= step]
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(kept))


def _parse(line: str) -> dict[str, Any] | None:
    """A process killed mid-write leaves a truncated last line; it is dropped, not fatal."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def read_metrics(run_dir: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (optionally one split), for reports, plots and tests."""
    path = Path(run_dir) / METRICS_FILE
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if split is None or r.get("split") == split]
