"""wav2vec 2.0 (Baevski et al. 2020): identify the quantised latent of each masked frame among distractors.

Pipeline per batch: conv latents ``z`` -> projection -> span masking (``SpanMasking``, filled with the
encoder's mask embedding) -> context network -> final projection at masked frames; targets are
Gumbel-quantised ``LayerNorm(z)`` at the same frames; distractors are other masked frames of the same utterance. Loss = contrastive
+ ``diversity_weight`` * codebook diversity + ``feature_penalty_weight`` * mean squared ``z``.

Two options exist for small runs, both off by default (the paper's objective). ``target_features`` quantises a
spectral front-end of the waveform at the encoder's frame rate instead of ``z``: fixed inputs whose
quantisation is learned, which at a 2-core budget give better features than targets the conv stack must first
learn (README, "wav2vec 2.0: bug or scale?"). ``unmasked_weight`` adds the same contrastive task on unmasked
frames, which with fixed targets trains the conv stack directly (HuBERT's unmasked loss; with ``conv`` targets
it would be a copy task).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import final

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from audiossl.audio.features import FRONTENDS, frame_mask
from audiossl.config import ConfigError, check_positive
from audiossl.data.batch import AudioBatch
from audiossl.models.encoder import Encoder
from audiossl.objectives._contrastive import info_nce, sample_excluding_self
from audiossl.objectives._masking import SpanMasking
from audiossl.objectives.base import CountsUpdates, ObjectiveOutput, register_objective


@dataclass
class Wav2Vec2Config:
    """Defaults are wav2vec 2.0 BASE (fairseq ``wav2vec2_base_librispeech``)."""

    name: str = "wav2vec2"
    mask_prob: float = 0.65  # share of frames masked, fairseq's mask_prob (the paper's p = 0.065 x 10-frame spans)
    mask_span: int = 10
    min_mask_spans: int = 2
    mask_contiguous: bool = False  # True: rows equalised without holes in the spans (fairseq/fairseq2: holes)
    num_negatives: int = 100
    logit_temperature: float = 0.1
    final_dim: int = 256
    num_codebooks: int = 2
    codebook_entries: int = 320
    codevector_dim: int = 256
    target_dropout: float = 0.1  # fairseq's dropout_features, on the quantiser input
    quantize_targets: bool = True  # False: the targets are the layer-normed conv features (fairseq's option)
    diversity_weight: float = 0.1
    feature_penalty_weight: float = 10.0
    gumbel_temp_start: float = 2.0
    gumbel_temp_end: float = 0.5
    gumbel_temp_decay: float = 0.999995
    collapse_codes_per_codebook: float = 4.0  # warn when fewer codes than this are in use per codebook
    collapse_check_after: int = 100  # updates before collapse warnings (everything looks collapsed at step 0)
    target_features: str = "conv"  # what is quantised: conv (the paper) | mfcc | logmel | fbank (CMVN'd frames)
    unmasked_weight: float = 0.0  # weight of the contrastive task on unmasked frames (needs spectral targets)

    def validate(self) -> Wav2Vec2Config:
        SpanMasking(self.mask_prob, self.mask_span, self.min_mask_spans, self.mask_contiguous).validate()
        check_positive(self.num_negatives, "objective.num_negatives")
        check_positive(self.logit_temperature, "objective.logit_temperature")
        if self.codevector_dim % self.num_codebooks:
            raise ConfigError(f"invalid config at 'objective.codevector_dim': {self.codevector_dim} is not a "
                              f"multiple of num_codebooks={self.num_codebooks}")
        if not 0 < self.gumbel_temp_end <= self.gumbel_temp_start:
            raise ConfigError("invalid config at 'objective.gumbel_temp_end': need 0 < end <= start")
        if self.target_features != "conv" and self.target_features not in FRONTENDS:
            raise ConfigError(f"invalid config at 'objective.target_features': {self.target_features!r}; choose "
                              f"from {['conv', *FRONTENDS]}")
        if self.unmasked_weight < 0 or (self.unmasked_weight > 0 and self.target_features == "conv"):
            raise ConfigError(f"invalid config at 'objective.unmasked_weight': {self.unmasked_weight} needs to be "
                              ">= 0, and 0 with target_features=conv (an unmasked frame would find its own "
                              "conv latent in its input)")
        return self

    def gumbel_temperature(self, update: int) -> float:
        """The Gumbel softmax temperature after ``update`` updates: ``max(start * decay^update, end)``."""
        return max(self.gumbel_temp_start * self.gumbel_temp_decay ** update, self.gumbel_temp_end)


@dataclass
class Quantized:
    vectors: Tensor  # (N, codevector_dim)
    codes: Tensor  # (N, num_codebooks) chosen entry per codebook
    code_perplexity: Tensor  # perplexity of the hard code histogram, summed over codebooks
    prob_perplexity: Tensor  # perplexity of the mean softmax, summed over codebooks (what diversity trains)
    logit_spread: Tensor  # std of the entry logits over entries / temperature: < ~1 means Gumbel noise picks codes


def _perplexity(mean_probs: Tensor) -> Tensor:
    return torch.exp(-(mean_probs * torch.log(mean_probs + 1e-7)).sum(-1)).sum()


@final
class GumbelQuantizer(nn.Module):
    """Product quantiser with ``num_codebooks`` x ``entries`` vectors, straight-through Gumbel-softmax.

    Same maths and init as fairseq2's ``GumbelWav2Vec2VectorQuantizer`` but written here because that one's
    forward (a) ties the temperature to a counter bumped on every *forward* call, which is wrong under
    gradient accumulation and on resume (we advance it per optimiser update in ``on_update``), and (b) holds a
    ``torch.compile(fullgraph=True)`` that costs 12-23 s on CPU and recompiles on every new shape.
    Code lookup is a matmul of the one-hot codes with the codebook (no broadcast-multiply-sum).
    """

    def __init__(self, input_dim: int, num_codebooks: int, entries: int, output_dim: int) -> None:
        super().__init__()
        self.num_codebooks, self.entries = num_codebooks, entries
        self.entry_proj = nn.Linear(input_dim, num_codebooks * entries)
        nn.init.normal_(self.entry_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.entry_proj.bias)
        self.codebook = nn.Parameter(torch.empty(num_codebooks, entries, output_dim // num_codebooks))
        nn.init.uniform_(self.codebook)

    def forward(self, x: Tensor, temperature: float) -> Quantized:
        logits = self.entry_proj(x).view(-1, self.num_codebooks, self.entries).float()
        hard = F.one_hot(logits.argmax(-1), self.entries).to(logits.dtype)
        code_ppl = _perplexity(hard.mean(0))
        prob_ppl = _perplexity(torch.softmax(logits, -1).mean(0))
        one_hot = F.gumbel_softmax(logits, tau=temperature, hard=True) if self.training else hard
        vectors = torch.einsum("ngv,gvd->ngd", one_hot.to(x.dtype), self.codebook)
        spread = logits.detach().std(-1).mean() / temperature
        return Quantized(vectors.flatten(1), one_hot.argmax(-1), code_ppl, prob_ppl, spread)


def equal_count_sample(frames: Tensor, count: int) -> Tensor:
    """Bool like ``frames`` (``(B, T)``): ``count`` of each row's ``frames`` at random (at most as many as the
    sparsest row has), so the picked frames reshape to ``(B, count, dim)`` as the masked ones do."""
    order = torch.rand(frames.shape, device=frames.device).masked_fill(~frames, 2.0).argsort(1)[:, :count]
    return torch.zeros_like(frames).scatter_(1, order, True)


@register_objective("wav2vec2", Wav2Vec2Config)
@final
class Wav2Vec2(CountsUpdates):
    """Masked contrastive prediction over quantised targets; see the module docstring."""

    def __init__(self, config: Wav2Vec2Config, encoder: Encoder) -> None:
        super().__init__()
        self.config = config.validate()
        self.encoder = encoder
        self.masking = SpanMasking(config.mask_prob, config.mask_span, config.min_mask_spans,
                                   config.mask_contiguous)
        self.spectral = self._spectral_targets(config, encoder)
        channels = encoder.feature_encoder.output_dim if self.spectral is None else self.spectral.output_dim
        self.quantizer = GumbelQuantizer(channels, config.num_codebooks, config.codebook_entries,
                                         config.codevector_dim) if config.quantize_targets else None
        self.target_dropout = nn.Dropout(config.target_dropout)
        self.target_projection = nn.Linear(config.codevector_dim if config.quantize_targets else channels,
                                           config.final_dim)
        self.final_projection = nn.Linear(encoder.output_dim, config.final_dim)

    @staticmethod
    def _spectral_targets(config: Wav2Vec2Config, encoder: Encoder) -> nn.Module | None:
        """The front-end whose frames are the targets, checked to line up with the encoder's frames."""
        if config.target_features == "conv":
            return None
        front_end = FRONTENDS[config.target_features](cmvn=True)
        convs = encoder.feature_encoder
        if front_end.downsample != convs.downsample or front_end.win_length > convs.receptive_field:
            raise ConfigError(
                f"invalid config at 'objective.target_features': {config.target_features} frames "
                f"({front_end.win_length} samples every {front_end.downsample}) do not line up with the "
                f"encoder's ({convs.receptive_field} every {convs.downsample}); use target_features=conv or a "
                "10 ms conv stack (encoder=cpc_transformer_tiny)")
        return front_end

    def _target_source(self, z: Tensor, waveforms: Tensor, lengths: Tensor) -> Tensor:
        """``(batch, frames, dim)``: the quantiser's input at every conv frame.

        A front-end window starts where its conv frame's receptive field starts and is no longer, so every
        valid conv frame has its spectral frame; the front-end's extra frames at the end are dropped.
        """
        if self.spectral is None:
            return self.encoder.feature_norm(z)
        with torch.no_grad():
            features, _ = self.spectral(waveforms, lengths)
        return features[:, : z.shape[1]].to(z.dtype)

    def _contrast(self, source: Tensor, context: Tensor, frames: Tensor,
                  negatives: Tensor | None = None) -> tuple[Tensor, Quantized | None]:
        """``(B, M, 1 + K)`` logits of the ``frames`` (bool ``(B, T)``, as many per row) against their targets."""
        config, batch_size = self.config, source.shape[0]
        targets_in = self.target_dropout(source[frames])
        quantized = self.quantizer(targets_in, self.temperature) if self.quantizer is not None else None
        targets = self.target_projection(targets_in if quantized is None else quantized.vectors)
        targets = targets.view(batch_size, -1, config.final_dim)
        predictions = self.final_projection(context[frames]).view(batch_size, -1, config.final_dim)
        codes = None if quantized is None else quantized.codes.view(batch_size, -1, config.num_codebooks)
        return self._logits(predictions, targets, codes, negatives), quantized

    @property
    def temperature(self) -> float:
        return self.config.gumbel_temperature(int(self.num_updates))

    @override
    def on_update(self, step: int) -> dict[str, float]:
        """Advance the Gumbel temperature schedule (the count is ``CountsUpdates``'s buffer)."""
        super().on_update(step)
        return {"temp": self.temperature}

    def _logits(self, predictions: Tensor, targets: Tensor, codes: Tensor | None,
                index: Tensor | None = None) -> Tensor:
        """``(B, M, 1 + K)`` cosine / temperature: the own target first, then K same-utterance distractors
        (``-inf`` where a distractor has the positive's codes; ``codes=None``, continuous targets: none is).

        Similarities are computed once for all masked-frame pairs (``B x M x M``) and distractors gathered
        from that matrix, which is exact and avoids materialising ``B x M x K x dim`` distractor vectors.
        A distractor with the same codes as the positive is the same vector and is excluded (-inf).
        """
        batch_size, masked, _ = predictions.shape
        similarity = torch.bmm(F.normalize(predictions, dim=-1), F.normalize(targets, dim=-1).transpose(1, 2))
        similarity = similarity / self.config.logit_temperature
        if index is None:
            index = sample_excluding_self(batch_size, masked, self.config.num_negatives, predictions.device)
        distractors = similarity.gather(2, index)
        if codes is not None:
            same_code = (codes[:, :, None, :] == codes[:, None, :, :]).all(-1).gather(2, index)
            distractors = distractors.masked_fill(same_code, float("-inf"))
        return torch.cat([similarity.diagonal(dim1=1, dim2=2).unsqueeze(-1), distractors], dim=-1)

    @override
    def forward(self, batch: AudioBatch, mask: Tensor | None = None,
                negatives: Tensor | None = None) -> ObjectiveOutput:
        """``mask`` (``(batch, frames)`` bool, as many per row) and ``negatives`` (``(batch, masked, K)`` indices
        into each row's masked frames, never a frame's own) replace the random draws: a seam for tests that
        give another implementation the same draws. Training passes neither."""
        keep = self.masking.keep_maskable(batch, self.encoder, "wav2vec2")
        encoder, config = self.encoder, self.config
        z, frames = encoder.extract(batch.waveforms[keep], batch.lengths[keep])
        valid = frame_mask(frames, z.shape[1])
        penalty = z.float().pow(2).mean(-1)[valid].mean()
        mask = self.masking.draw(frames, z.shape[1]) if mask is None else mask
        output = encoder.contextualize(encoder.mask(encoder.project(z), mask), frames, z)
        source = self._target_source(z, batch.waveforms[keep], batch.lengths[keep])
        logits, quantized = self._contrast(source, output.features, mask, negatives)
        contrastive, accuracy = info_nce(logits.float())
        loss = contrastive + config.feature_penalty_weight * penalty
        metrics = {"contrastive": contrastive, "penalty": penalty, "acc": accuracy,
                   "mask_frac": mask.sum() / valid.sum()}
        unmasked_frames = valid & ~mask
        count = int(unmasked_frames.sum(1).min()) if config.unmasked_weight > 0 else 0
        if count >= 2:  # distractors need another frame in the row
            unmasked, _ = self._contrast(source, output.features, equal_count_sample(unmasked_frames, count))
            metrics["contrastive_u"], metrics["acc_u"] = info_nce(unmasked.float())
            loss = loss + config.unmasked_weight * metrics["contrastive_u"]
        if quantized is not None:
            total_entries = config.num_codebooks * config.codebook_entries
            diversity = (total_entries - quantized.prob_perplexity) / total_entries
            loss = loss + config.diversity_weight * diversity
            metrics |= {"diversity": diversity, "code_ppl": quantized.code_perplexity,
                        "prob_ppl": quantized.prob_perplexity, "logit_spread": quantized.logit_spread,
                        "same_code": torch.isinf(logits[..., 1:]).float().mean()}
        metrics["loss"] = loss
        return ObjectiveOutput(loss, {k: v.detach() for k, v in metrics.items()} | {"temp": self.temperature})

    @override
    def warnings(self, metrics: dict[str, float]) -> list[str]:
        """Advice when the run looks collapsed: contrastive task at chance, or only a handful of codes used."""
        config = self.config
        if int(self.num_updates) < config.collapse_check_after:
            return []
        chance_loss, chance_acc = math.log(config.num_negatives + 1), 1.0 / (config.num_negatives + 1)
        symptoms = []
        if metrics.get("contrastive", 0.0) > 0.95 * chance_loss:  # accuracy can sit above 1/(K+1) by noise alone
            symptoms.append(f"contrastive loss {metrics['contrastive']:.3f} is near chance log(K+1)="
                            f"{chance_loss:.3f} (accuracy {metrics.get('acc', math.nan):.3f}, chance "
                            f"{chance_acc:.3f})")
        min_ppl = config.collapse_codes_per_codebook * config.num_codebooks
        if "code_ppl" in metrics and metrics["code_ppl"] < min_ppl:
            symptoms.append(f"code perplexity {metrics['code_ppl']:.2f} < {min_ppl:g}: only a handful of the "
                            f"{config.num_codebooks}x{config.codebook_entries} codes are in use")
        if not symptoms:
            return []
        advice = ("wav2vec2 looks collapsed (" + "; ".join(symptoms) + "). Try: a lower learning rate "
                  "(optim.lr); a higher objective.diversity_weight (e.g. 0.1 -> 0.5); check the feature penalty "
                  "(metric 'penalty', objective.feature_penalty_weight) and the feature encoder's normalisation "
                  "(encoder.conv_norm); conv blocks without bias and with GELU (encoder.conv_bias=false, "
                  "encoder.conv_activation=gelu: with bias + ReLU the 10 ms stack sits at chance); a longer warmup.")
        return [advice]
