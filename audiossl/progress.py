"""Progress for long work: a tqdm bar on a terminal, plain timestamped lines in logs.

tqdm redraws with carriage returns; written to a file (``nohup``, CI, a cluster's job log) that becomes
thousands of frames on one line. ``progress_bar`` therefore returns tqdm only when stderr is a terminal
and otherwise a ``LineProgress`` with the same small interface that prints one line every ``interval``
seconds (position, rate, ETA and the postfix) and one at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_SECONDS = 30.0


class LineProgress:
    """tqdm's ``update`` / ``set_postfix`` / ``write`` / ``close`` / ``n``, printed as plain lines."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, disable: bool = False, interval: float = LOG_INTERVAL_SECONDS,
                 **_: Any) -> None:
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = initial
        self.disable = disable
        self.interval = interval
        self._started = self._last = time.monotonic()
        self._start_n = initial
        self._postfix = ""

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, count: float = 1) -> None:
        self.n += count
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print()

    def set_postfix(self, **values: Any) -> None:
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    @staticmethod
    def write(text: str) -> None:
        """Progress lines go where tqdm draws its bar: stderr."""
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.disable and self.n > self._start_n:
            self._print()
        self.disable = True

    def _print(self) -> None:
        if self.disable:
            return
        elapsed = time.monotonic() - self._started
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        where = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        eta = f", eta {(self.total - self.n) / rate:.0f} s" if self.total and rate > 0 else ""
        postfix = f", {self._postfix}" if self._postfix else ""
        stamp = time.strftime("%H:%M:%S")
        self.write(f"[{stamp}] {self.desc + ': ' if self.desc else ''}{where} {self.unit}, "
                   f"{rate:.3g} {self.unit}/s{eta}{postfix}")


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """tqdm on a terminal, ``LineProgress`` otherwise; same arguments as tqdm."""
    if sys.stderr.isatty():
        return tqdm(iterable, **kwargs)
    return LineProgress(iterable, **kwargs)


def write_line(text: str, stream: Any = None) -> None:
    """Print a message (to stdout, or ``stream``) without tearing a tqdm bar drawn on stderr."""
    tqdm.write(text, file=stream or sys.stdout)
