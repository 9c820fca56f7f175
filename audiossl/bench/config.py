"""``audiossl-bench`` settings: which upstreams, which tasks, and how hard to try (the profile)."""

from __future__ import annotations

from dataclasses import dataclass, field

from audiossl.config import ConfigError, check_choice

TASK_NAMES = ("phone_frames", "abx", "speaker", "phoneme", "asr")
FRONTENDS = ("mfcc", "fbank")


@dataclass
class Profile:
    """How much each probe gets; ``quick`` scores one upstream in a few CPU minutes, ``full`` is the reference.

    ``frame_stride``: every n-th labelled training frame feeds the frame probe (neighbouring 10 ms frames
    are near copies; the dev/test frames are all scored). ``abx_layers``: ``best`` (the best frame-probe
    layer) or ``all``. ``seeds``: seeds of the CTC heads (the L-BFGS probes are deterministic).
    """

    frame_stride: int = 2
    probe_iterations: int = 200
    abx_layers: str = "best"
    abx_splits: list[str] = field(default_factory=lambda: ["dev_clean"])
    seeds: list[int] = field(default_factory=lambda: [1])
    ctc_max_epochs: int = 40
    ctc_patience: int = 5
    asr_head: str = "linear"
    test_splits: list[str] = field(default_factory=list)


PROFILES = {
    "quick": Profile(),
    "full": Profile(frame_stride=1, probe_iterations=500, abx_layers="all", abx_splits=["dev_clean", "test_clean"],
                    seeds=[1, 2, 3], ctc_max_epochs=100, ctc_patience=10, asr_head="bilstm",
                    test_splits=["test_clean"]),
}


@dataclass
class BenchConfig:
    """``conf/bench.yaml``. ``upstreams``: checkpoints / run directories, ``random``, ``fbank``, ``mfcc``.

    ``random`` is the architecture of ``random_from`` (default: the first checkpoint in ``upstreams``)
    with fresh weights. ``names`` label the upstreams in the report (default: run directory names).
    """

    upstreams: list[str] = field(default_factory=lambda: ["mfcc", "fbank"])
    names: list[str] = field(default_factory=list)
    random_from: str | None = None
    tasks: list[str] = field(default_factory=lambda: list(TASK_NAMES))
    profile: str = "quick"
    manifest_dir: str = "manifests/synth"
    train_split: str = "train_1h"  # frame phones, speaker ID (held-out utterances), phoneme recognition
    asr_split: str = "train_10min"  # few-label ASR
    dev_split: str = "dev_clean"
    lm_order: int = 3
    lm_text_split: str = "train_clean"
    out_dir: str = "reports/bench"
    title: str = "audiossl mini-SUPERB"
    num_threads: int = 2
    device: str = "auto"  # where upstreams encode (auto: the GPU when there is one); probes fit on the CPU
    progress: bool = True

    def validate(self) -> BenchConfig:
        if not self.upstreams:
            raise ConfigError("invalid config at 'upstreams': give at least one (a run dir, checkpoint, mfcc, ...)")
        if self.names and len(self.names) != len(self.upstreams):
            raise ConfigError(f"invalid config at 'names': {len(self.names)} names for {len(self.upstreams)} upstreams")
        for task in self.tasks:
            check_choice(task, TASK_NAMES, "tasks")
        check_choice(self.profile, tuple(PROFILES), "profile")
        return self

    @property
    def settings(self) -> Profile:
        return PROFILES[self.profile]
