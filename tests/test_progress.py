"""Progress in logs: plain lines (no carriage-return frames) when stderr is not a terminal."""

from __future__ import annotations

from audiossl.progress import LineProgress, progress_bar


def test_a_log_gets_plain_lines_with_rate_eta_and_postfix(capsys) -> None:
    bar = progress_bar(total=10, desc="train", unit="step")  # pytest's stderr is not a terminal
    assert isinstance(bar, LineProgress)
    bar.interval = 0.0
    bar.set_postfix(loss="1.23")
    for _ in range(3):
        bar.update()
    bar.close()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 4 and "\r" not in err  # three updates + the closing line
    assert "train: 3/10 step" in lines[-1] and "eta" in lines[-1] and "loss=1.23" in lines[-1]


def test_iterating_counts_and_a_quiet_interval_prints_only_the_end(capsys) -> None:
    items = list(LineProgress(range(5), total=5, desc="extract", unit="batch"))
    assert items == [0, 1, 2, 3, 4]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "5/5 batch" in lines[0]
