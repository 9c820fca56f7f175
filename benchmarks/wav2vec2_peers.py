"""The peers' own wav2vec 2.0 (HF ``Wav2Vec2ForPreTraining``, fairseq2 ``Wav2Vec2Model``) at our shape, and
their pretraining under audiossl's trainer: "bug or scale", asked of the peers' own training rather than of
one forward pass.

``build_hf`` / ``build_fairseq2`` turn our encoder and wav2vec 2.0 objective configs into the peer's model, and
``hf_loss`` / ``fairseq2_loss`` run one batch through the peer's own span mask, negative sampling and loss; the
step-time benchmark (``bench_pretrain.py``) and the overfit check (``wav2vec2_overfit.py``) use them too.

Run as a script, this pretrains a peer with everything ``audiossl-pretrain +experiment=wav2vec2_paper_tiny`` gets:
the same manifests, crops, batches and shuffling seed, the same architecture, the AdamW optimiser, learning-rate
schedule, gradient clipping, Gumbel temperature schedule and number of updates. What stays the peer's own is the
model code, its mask, its negatives and its loss. If a peer's features probe better than ours after the same
run, ours has a bug; if none does better than MFCC, it is the recipe at this scale.

The run directory is an ordinary audiossl run (progress bar, logs, resumable checkpoints) plus the peer's own
checkpoint, ``hf/`` (``save_pretrained``) or ``fairseq2/`` (``model.yaml`` + ``step_N/``), which
``audiossl-bench`` opens like any upstream:

    python benchmarks/wav2vec2_peers.py --peer hf run_dir=runs/peers/hf        # then hydra overrides
    python benchmarks/wav2vec2_peers.py --peer fairseq2 run_dir=runs/peers/fairseq2
    audiossl-bench "upstreams=[mfcc,runs/pretrain/wav2vec2_paper_tiny,runs/peers/hf/hf,runs/peers/fairseq2/fairseq2]" \\
        tasks=[phone_frames,abx,speaker]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")  # fairseq2's quantizer compiles itself otherwise

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from typing_extensions import override  # noqa: E402

from audiossl.cli._hydra import CONF_DIR  # noqa: E402
from audiossl.cli.pretrain import PretrainSetup, open_data, validate  # noqa: E402
from audiossl.data.batch import AudioBatch  # noqa: E402
from audiossl.models.interop.fairseq2 import MODEL_FILE  # noqa: E402
from audiossl.objectives.base import CountsUpdates, ObjectiveOutput  # noqa: E402
from audiossl.training.checkpoint import seed_everything  # noqa: E402
from audiossl.training.distributed import init_distributed, shutdown  # noqa: E402
from audiossl.training.loop import Trainer, Validation  # noqa: E402

PRESET = "wav2vec2_paper_tiny"
Metrics = dict[str, Tensor]


def build_hf(encoder: Any, objective: Any) -> nn.Module:
    """``Wav2Vec2ForPreTraining`` with our encoder's shape and regularisation and our objective's codebooks,
    mask share, span, distractors and temperatures."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

    config = Wav2Vec2Config(
        conv_dim=[c for c, _, _ in encoder.conv_layers], conv_kernel=[k for _, k, _ in encoder.conv_layers],
        conv_stride=[s for _, _, s in encoder.conv_layers], conv_bias=encoder.conv_bias,
        feat_extract_activation=encoder.conv_activation,
        feat_extract_norm="layer" if encoder.conv_norm == "layer_norm" else "group",
        do_stable_layer_norm=encoder.norm_first, hidden_size=encoder.model_dim,
        num_hidden_layers=encoder.num_layers, num_attention_heads=encoder.num_heads,
        intermediate_size=encoder.ffn_dim, num_conv_pos_embeddings=encoder.pos_conv_kernel,
        num_conv_pos_embedding_groups=encoder.pos_conv_groups, hidden_dropout=encoder.dropout,
        attention_dropout=encoder.attention_dropout, activation_dropout=encoder.activation_dropout,
        feat_proj_dropout=encoder.feature_dropout, feat_quantizer_dropout=objective.target_dropout,
        layerdrop=encoder.layerdrop, mask_time_prob=objective.mask_prob, mask_time_length=objective.mask_span,
        mask_time_min_masks=objective.min_mask_spans,
        num_codevectors_per_group=objective.codebook_entries, num_codevector_groups=objective.num_codebooks,
        codevector_dim=objective.codevector_dim, proj_codevector_dim=objective.final_dim,
        num_negatives=objective.num_negatives, contrastive_logits_temperature=objective.logit_temperature,
        diversity_loss_weight=objective.diversity_weight)
    return Wav2Vec2ForPreTraining(config).train()


def hf_loss(model: nn.Module, waveforms: Tensor) -> tuple[Tensor, Metrics]:
    """HF's mask, negatives and loss on one cropped (unpadded) batch, as a mean over masked frames: HF sums
    over them and its own pretraining script divides by their number, as our objective's mean does."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    config = model.config
    shape = (waveforms.shape[0], int(model._get_feat_extract_output_lengths(waveforms.shape[1])))
    mask = _compute_mask_indices(shape, config.mask_time_prob, config.mask_time_length,
                                 min_masks=config.mask_time_min_masks)
    negatives = _sample_negative_indices(shape, config.num_negatives, mask_time_indices=mask)
    output = model(waveforms, mask_time_indices=torch.from_numpy(mask).to(waveforms.device),
                   sampled_negative_indices=torch.from_numpy(negatives).to(waveforms.device))
    masked = max(int(mask.sum()), 1)
    return output.loss / masked, {"contrastive": output.contrastive_loss.detach() / masked,
                                  "diversity": output.diversity_loss.detach() / masked,
                                  "code_ppl": output.codevector_perplexity.detach()}


def build_fairseq2(encoder: Any, objective: Any) -> nn.Module:
    """fairseq2's own ``Wav2Vec2Model`` (model + loss) at the same shape, masking share, distractors and
    Gumbel schedule (fairseq2's quantizer counts its own updates)."""
    from fairseq2.models.wav2vec2 import create_wav2vec2_model

    return create_wav2vec2_model(fairseq2_config(encoder, objective)).train()


def fairseq2_config(encoder: Any, objective: Any) -> Any:
    from fairseq2.models.transformer import TransformerNormOrder
    from fairseq2.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2EncoderConfig

    encoder_config = Wav2Vec2EncoderConfig(
        model_dim=encoder.model_dim, feature_dim=encoder.conv_layers[-1][0],
        feature_extractor_layer_descs=[tuple(layer) for layer in encoder.conv_layers],
        feature_extractor_bias=encoder.conv_bias, feature_extractor_layer_norm_convs=encoder.conv_norm == "layer_norm",
        feature_grad_scale=encoder.feature_grad_scale, pos_conv_kernel_size=encoder.pos_conv_kernel,
        num_pos_conv_groups=encoder.pos_conv_groups, num_encoder_layers=encoder.num_layers,
        num_encoder_attn_heads=encoder.num_heads, ffn_inner_dim=encoder.ffn_dim, dropout_p=encoder.dropout,
        attn_dropout_p=encoder.attention_dropout, ffn_inner_dropout_p=encoder.activation_dropout,
        layer_drop_p=encoder.layerdrop, layer_norm_features=not encoder.norm_first,  # as fairseq2's pre-LN archs
        norm_order=TransformerNormOrder.PRE if encoder.norm_first else TransformerNormOrder.POST)
    return Wav2Vec2Config(
        encoder_config=encoder_config, final_dim=objective.final_dim, quantized_dim=objective.codevector_dim,
        num_codebooks=objective.num_codebooks, num_codebook_entries=objective.codebook_entries,
        codebook_sampling_temperature=(objective.gumbel_temp_start, objective.gumbel_temp_end,
                                       objective.gumbel_temp_decay),
        temporal_mask_span_len=objective.mask_span, max_temporal_mask_prob=objective.mask_prob,
        min_num_temporal_mask_spans=objective.min_mask_spans, num_distractors=objective.num_negatives,
        logit_temp=objective.logit_temperature)


def fairseq2_loss(model: nn.Module, waveforms: Tensor, objective: Any) -> tuple[Tensor, Metrics]:
    """fairseq2's mask, distractors and loss (weighted as our objective weighs its terms), as a mean over
    masked frames (fairseq2 sums over them, like HF)."""
    from fairseq2.nn import BatchLayout

    loss, output = model(waveforms, BatchLayout.of(waveforms), diversity_weight=objective.diversity_weight,
                         features_penalty_weight=objective.feature_penalty_weight)
    masked = max(int(output.logits.shape[0] * output.logits.shape[1]), 1)
    return loss.aggregate / masked, {"contrastive": loss.contrastive.detach() / masked,
                                     "diversity": loss.diversity.detach() / masked,
                                     "code_ppl": output.quantizer_output.code_perplexity.detach()}


class PeerPretraining(CountsUpdates):
    """A peer's model and loss behind our ``Objective`` interface, so ``Trainer`` drives it.

    HF draws its mask and negatives with numpy, which the trainer does not seed: numpy is seeded here from the
    update count, so a resumed run draws the same masks. HF's Gumbel temperature is set after each update on
    our schedule; fairseq2's quantizer follows the same schedule from its own update counter.
    """

    def __init__(self, peer: str, setup: PretrainSetup) -> None:
        super().__init__()
        self.peer, self.config = peer, setup.objective
        build = build_hf if peer == "hf" else build_fairseq2
        self.model = build(setup.encoder, setup.objective)
        self.encoder = self.model.wav2vec2 if peer == "hf" else self.model.encoder
        self.on_update(0)

    @override
    def forward(self, batch: AudioBatch) -> ObjectiveOutput:  # type: ignore[override]
        if self.peer == "fairseq2":
            loss, metrics = fairseq2_loss(self.model, batch.waveforms, self.config)
        else:
            np.random.seed(2 * int(self.num_updates) + int(self.training))
            loss, metrics = hf_loss(self.model, batch.waveforms)
        return ObjectiveOutput(loss, dict(metrics))

    @override
    def on_update(self, step: int) -> dict[str, float]:
        super().on_update(step)
        temperature = self.config.gumbel_temperature(step)
        if self.peer == "hf":
            self.model.set_gumbel_temperature(temperature)
        return {"temp": temperature}

    def save_peer_checkpoint(self, out: Path, step: int, setup: PretrainSetup) -> Path:
        """The peer's own checkpoint format, the one its users would load."""
        if self.peer == "hf":
            self.model.save_pretrained(out)
            return out
        from fairseq2.checkpoint.model_metadata import StandardModelMetadataDumper
        from fairseq2.file_system import LocalFileSystem
        from fairseq2.utils.structured import StandardValueConverter
        from fairseq2.utils.yaml import RuamelYamlDumper

        files = LocalFileSystem()
        StandardModelMetadataDumper(files, RuamelYamlDumper(files), StandardValueConverter()).dump(
            out, "wav2vec2", fairseq2_config(setup.encoder, setup.objective))
        state_file = out / f"step_{step}" / MODEL_FILE
        state_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), state_file)
        return out


def pretrain_peer(peer: str, setup: PretrainSetup) -> Path:
    """``audiossl-pretrain`` with the peer in place of our objective; returns the peer's checkpoint directory."""
    ctx = init_distributed(setup.trainer.device)
    train, valid = open_data(setup, ctx)
    seed_everything(setup.trainer.seed)
    objective = PeerPretraining(peer, setup)
    trainer = Trainer(objective, train, setup.trainer, setup.optim, setup.run_dir, Validation(data=valid),
                      config_to_save={**setup.resolved(), "peer": peer})
    try:
        summary = trainer.fit()
    finally:
        shutdown(ctx)
    out = objective.save_peer_checkpoint(Path(setup.run_dir) / peer, summary["step"], setup)
    print(f"done: {summary['step']} updates; last validation {summary['valid']}; {peer} checkpoint: {out}")
    return out


def compose_preset(overrides: list[str], preset: str = PRESET) -> PretrainSetup:
    """``+experiment=<preset>`` (``wav2vec2_paper_tiny``) plus hydra overrides, validated as ``audiossl-pretrain``
    does."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return validate(compose(config_name="pretrain", overrides=[f"+experiment={preset}", *overrides]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=["hf", "fairseq2"], default="hf")
    parser.add_argument("overrides", nargs="*", help="hydra overrides of the wav2vec2_paper_tiny preset")
    args = parser.parse_args()
    pretrain_peer(args.peer, compose_preset(args.overrides))


if __name__ == "__main__":
    main()
