"""One upstream's frozen features, extracted once per split and shared by every bench task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from audiossl.config import ConfigError
from audiossl.data.pipeline import EVAL_BATCH_SAMPLES, AudioPipeline, DataConfig
from audiossl.features.frozen import FrozenSplit, extract
from audiossl.features.upstream import FRONT_ENDS, Upstream, build_upstream, random_upstream
from audiossl.bench.config import BenchConfig
from audiossl.training.distributed import resolve_device

LABELS = ("align", "spk", "phn", "ltr", "wrd", "kw", "accent")


@dataclass
class UpstreamFeatures:
    """``source`` is what the user named (run dir, checkpoint, ``random``, ``mfcc``, ``fbank``).

    Splits are extracted on first use and kept in memory for the upstream's other tasks. Front-ends come
    in two forms: with per-utterance CMVN (their standard form, for frame tasks) and without (speaker ID,
    where CMVN would erase the mean that carries the speaker); learned encoders are the same in both.
    """

    name: str
    source: str
    cfg: BenchConfig
    random_from: str | None = None
    _cache: dict[tuple[str, bool, str], FrozenSplit] = field(default_factory=dict)
    _upstreams: dict[bool, Upstream] = field(default_factory=dict)

    @property
    def is_frontend(self) -> bool:
        return self.source in FRONT_ENDS

    def upstream(self, cmvn: bool = True) -> Upstream:
        cmvn = cmvn and self.is_frontend
        if cmvn not in self._upstreams:
            self._upstreams[cmvn] = self._build(cmvn).to(resolve_device(self.cfg.device))
        return self._upstreams[cmvn]

    def _build(self, cmvn: bool) -> Upstream:
        if self.source != "random":
            return build_upstream(self.source, cmvn=cmvn)
        if self.random_from is None:
            raise ConfigError("invalid config at 'random_from': upstream 'random' needs an architecture; give "
                              "random_from=<checkpoint> or a checkpoint among the upstreams")
        return random_upstream(self.random_from, seed=1)  # the same random encoder in every run of the bench

    def split(self, split: str, cmvn: bool = True, manifest_dir: str | None = None) -> FrozenSplit:
        """``manifest_dir`` (default ``cfg.manifest_dir``) for splits kept elsewhere, like the keyword set."""
        key = (split, cmvn and self.is_frontend, manifest_dir or self.cfg.manifest_dir)
        if key not in self._cache:
            self._cache[key] = self._extract(split, key[1], Path(key[2]))
        return self._cache[key]

    def _extract(self, split: str, cmvn: bool, manifest_dir: Path) -> FrozenSplit:
        labels = [kind for kind in LABELS if (manifest_dir / f"{split}.{kind}").is_file()]
        data = DataConfig(manifest_dir=str(manifest_dir), max_batch_samples=EVAL_BATCH_SAMPLES).for_evaluation(labels)
        pipeline = AudioPipeline(data, split, train=False)
        frozen = extract(self.upstream(cmvn), pipeline, total=len(pipeline), desc=f"{self.name} {split}",
                         progress=self.cfg.progress)
        if len(frozen.ids) != pipeline.num_rows:
            print(f"note: {self.name} / {split}: {pipeline.num_rows - len(frozen.ids)} unreadable file(s) skipped\n"
                  f"{pipeline.fault_report()}")
        return frozen

    def release(self) -> None:
        """Drop the cached features (they can take a few hundred MB per upstream)."""
        self._cache.clear()
