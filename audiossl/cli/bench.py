"""``audiossl-bench``: the mini-SUPERB harness over frozen upstreams (logic lives in ``audiossl.bench``).

    audiossl-bench upstreams=[mfcc,fbank,random,runs/pretrain/cpc_tiny] random_from=runs/pretrain/cpc_tiny
    audiossl-bench upstreams=[...] profile=full out_dir=reports/bench_full
    audiossl-bench upstreams=[runs/x] tasks=[phone_frames,abx]

Rows are saved as they finish (``out_dir/rows``); running the same command again skips them.
"""

from __future__ import annotations

from typing import Any

from audiossl.bench.config import BenchConfig
from audiossl.bench.runner import run_bench
from audiossl.cli._hydra import hydra_app
from audiossl.config import ConfigError, to_config
from audiossl.reports.bench import write_bench_report


@hydra_app("bench")
def main(node: Any) -> None:
    cfg = to_config(BenchConfig, node, "bench")
    try:
        rows = run_bench(cfg)
    except FileNotFoundError as error:
        raise ConfigError(f"invalid config at 'upstreams': {error}") from None
    path = write_bench_report(cfg.out_dir, rows, cfg.title, cfg.dev_split,
                              notes=[f"profile `{cfg.profile}`: {vars(cfg.settings)}"])
    print(f"report: {path}")


if __name__ == "__main__":
    main()
