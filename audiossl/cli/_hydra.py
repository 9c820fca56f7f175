"""Shared plumbing for the hydra entry points (thin: no logic beyond wiring lives in ``cli``)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable

import hydra

from audiossl.config import ConfigError

CONF_DIR = Path(os.environ.get("AUDIOSSL_CONF", Path(__file__).resolve().parents[2] / "conf"))


def hydra_app(config_name: str) -> Callable[[Callable[[Any], None]], Callable[[], None]]:
    """``@hydra_app("pretrain")`` on ``def run(cfg)``: a console-script ``main`` with ``key=value`` overrides.

    A ``ConfigError`` ends the program with its message and exit status 2 instead of a traceback;
    entry points that validate other input (manifests, corpora) catch their own error types the same way.
    """

    def decorate(run: Callable[[Any], None]) -> Callable[[], None]:
        @functools.wraps(run)
        def guarded(cfg: Any) -> None:
            try:
                run(cfg)
            except ConfigError as error:
                print(f"error: {error}", file=sys.stderr)
                sys.exit(2)

        return hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(guarded)

    return decorate
