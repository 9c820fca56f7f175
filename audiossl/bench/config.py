"""``audiossl-bench`` settings: which upstreams, which tasks, and how hard to try (the profile)."""

from __future__ import annotations

from dataclasses import dataclass, field

from audiossl.config import ConfigError, check_choice, check_positive

TASK_NAMES = ("phone_frames", "abx", "speaker", "phoneme", "asr", "speaker_crops", "accent", "keywords")
CLIP_TASKS = ("speaker_crops", "accent", "keywords")
DEFAULT_TASKS = TASK_NAMES[:5]  # the clip tasks are opt-in: keywords and accent need their own sets built first


@dataclass
class Profile:
    """How much each probe gets; ``quick`` scores one upstream in a few CPU minutes, ``full`` is the reference.

    ``frame_stride``: every n-th labelled training frame feeds the frame probe (neighbouring 10 ms frames
    are near copies; the dev/test frames are all scored). ``abx_layers``: ``best`` (the best frame-probe
    layer) or ``all``. ``seeds``: seeds of the CTC heads, and of the windows and clips the clip tasks
    (``speaker_crops``, ``accent``, ``keywords``) draw; the L-BFGS probes themselves are deterministic.
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


CEILING_NAME = "supervised ceiling"
"""The report's name for the ``ceiling`` upstream."""


@dataclass
class BenchConfig:
    """``conf/bench.yaml``. ``upstreams``: checkpoints / run directories, ``random``, ``fbank``, ``mfcc``.

    ``random`` is the architecture of ``random_from`` (default: the first checkpoint in ``upstreams``)
    with fresh weights. ``names`` label the upstreams in the report (default: run directory names).
    ``ceiling``: a supervised upstream (``conf/recipe/phone_ceiling.yaml``'s run: the same encoder trained end
    to end on frame phones), scored as one more row named ``CEILING_NAME``; the report says how far every
    other row is from it.
    """

    upstreams: list[str] = field(default_factory=lambda: ["mfcc", "fbank"])
    names: list[str] = field(default_factory=list)
    random_from: str | None = None
    ceiling: str | None = None
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS))
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
    crop_seconds: float = 1.0  # speaker_crops: window length
    crops_per_utterance: int = 4  # speaker_crops and accent: windows drawn per utterance
    accent_seconds: float = 2.0  # accent: window length (0: the whole clip, one item per clip)
    accent_manifest_dir: str = "manifests/accents"  # accent: written by audiossl-accents
    keywords_manifest_dir: str = "manifests/keywords"  # keywords: written by audiossl-keywords
    keywords_test_splits: list[str] = field(default_factory=lambda: ["test", "test_other"])

    def validate(self) -> BenchConfig:
        if not self.upstreams:
            raise ConfigError("invalid config at 'upstreams': give at least one (a run dir, checkpoint, mfcc, ...)")
        if self.names and len(self.names) != len(self.upstreams):
            raise ConfigError(f"invalid config at 'names': {len(self.names)} names for {len(self.upstreams)} upstreams")
        if self.ceiling is not None and self.ceiling in self.upstreams:
            raise ConfigError(f"invalid config at 'ceiling': {self.ceiling} is already in upstreams; give it once")
        for task in self.tasks:
            check_choice(task, TASK_NAMES, "tasks")
        check_choice(self.profile, tuple(PROFILES), "profile")
        check_positive(self.crop_seconds, "crop_seconds")
        check_positive(self.crops_per_utterance, "crops_per_utterance")
        check_positive(self.accent_seconds, "accent_seconds", allow_zero=True)
        if not self.keywords_test_splits:
            raise ConfigError("invalid config at 'keywords_test_splits': give at least one (test, test_other)")
        return self

    def clip_settings(self, task: str) -> dict[str, object]:
        """The keys a clip task's row depends on beyond the shared ones (a change recomputes only that row)."""
        return {"speaker_crops": {"crop_seconds": self.crop_seconds, "crops": self.crops_per_utterance},
                "accent": {"accent_seconds": self.accent_seconds, "crops": self.crops_per_utterance,
                           "manifest_dir": self.accent_manifest_dir},
                "keywords": {"manifest_dir": self.keywords_manifest_dir,
                             "test_splits": list(self.keywords_test_splits)}}.get(task, {})

    @property
    def settings(self) -> Profile:
        return PROFILES[self.profile]
