"""``benchmarks/wav2vec2_peers.py``: the peers' own wav2vec 2.0 (HF, fairseq2) trained by our trainer on the
preset's data and schedule, and saved in the peer's format, so the bench probes exactly what was trained."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from _trainer_support import write_clips
from audiossl.features.upstream import load_encoder
from audiossl.models.interop.fairseq2 import MODEL_FILE
from audiossl.training.logging import read_metrics
from test_interop import fairseq2_outputs
from test_pretrain_cli import tiny_run_overrides

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import wav2vec2_peers  # noqa: E402


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clips(tmp_path_factory.mktemp("clips"), count=12, seconds=(1.0, 1.4))


def peer_features(peer: str, out: Path, setup, clip: torch.Tensor) -> torch.Tensor:
    """The encoder output as the peer's own code computes it from its saved checkpoint."""
    if peer == "hf":
        from transformers import Wav2Vec2Model

        with torch.no_grad():
            return Wav2Vec2Model.from_pretrained(out).eval()(clip).last_hidden_state
    model = wav2vec2_peers.build_fairseq2(setup.encoder, setup.objective).eval()
    model.load_state_dict(torch.load(next(out.glob(f"step_*/{MODEL_FILE}"))))
    return fairseq2_outputs(model, clip)[1]


@pytest.mark.parametrize("peer", ["hf", "fairseq2"])
def test_peer_pretrains_under_our_trainer_and_opens_as_an_upstream(peer, tmp_path, clips, one_thread_seeded):
    setup = wav2vec2_peers.compose_preset([*tiny_run_overrides(clips, tmp_path / "run", steps=4),
                                           "objective.num_negatives=10", "objective.gumbel_temp_decay=0.9"])
    out = wav2vec2_peers.pretrain_peer(peer, setup)

    logged = read_metrics(tmp_path / "run", "train")
    assert [r["step"] for r in logged] == [2, 4] and all(torch.isfinite(torch.tensor(r["loss"])) for r in logged)
    assert {"contrastive", "diversity", "code_ppl"} <= set(logged[-1]["metrics"])
    # the preset's Gumbel schedule: 2.0 x 0.9^4 after 4 updates, set by us (HF) or counted by fairseq2 itself
    assert logged[-1]["metrics"]["temp"] == pytest.approx(2.0 * 0.9 ** 4)
    if peer == "fairseq2":
        state = torch.load(out / "step_4" / MODEL_FILE)
        assert int(state["quantizer.num_updates"]) == 4

    # the peer's own checkpoint opens as our encoder, and computes what the peer's own code computes
    encoder, _ = load_encoder(out)
    assert encoder.config.conv_activation == "gelu" and encoder.config.norm_first
    clip = 0.1 * torch.randn(1, 16_000)
    with torch.no_grad():
        ours = encoder.eval()(clip, torch.tensor([16_000])).features
    theirs = peer_features(peer, out, setup, clip)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
