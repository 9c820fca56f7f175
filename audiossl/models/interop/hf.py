"""HuggingFace ``transformers`` wav2vec 2.0 / HuBERT directories in and out.

A directory holds ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``, or shards with an
index). Import covers ``Wav2Vec2Model``, ``Wav2Vec2ForPreTraining`` (quantiser and projections too),
``Wav2Vec2ForCTC`` (``lm_head`` + ``vocab.json``), ``HubertModel`` and ``HubertForCTC``; export writes a
directory that ``Wav2Vec2Model`` / ``Wav2Vec2ForCTC.from_pretrained`` load, with ``preprocessor_config.json``
(and the tokenizer files for CTC).

Layer correspondence (checked by ``tests/test_interop.py``): HF's ``hidden_states[0]`` is the input of the
first Transformer layer, i.e. *after* the positional convolution (and, post-LN, its LayerNorm), while our
``hidden_states[0]`` is the projected features *before* it; HF's ``hidden_states[i]`` equals ours for
``i >= 1`` (the last one after the final LayerNorm for pre-LN, "stable layer norm", models). HF's
``extract_features`` is our ``feature_norm(local_features)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from audiossl.models.encoder import Encoder, EncoderConfig
from audiossl.models.interop.common import (
    CTCHead,
    InteropError,
    KeyMap,
    PeerModel,
    PretrainingHead,
    build_loaded_encoder,
    exportable,
    get_key,
    read_torch_file,
    require,
    split_prefix,
    transformer_layer_pairs,
)

KEYS = KeyMap([
    ("feature_encoder.layers.{i}.conv.", "feature_extractor.conv_layers.{i}.conv."),
    ("feature_encoder.layers.{i}.norm.", "feature_extractor.conv_layers.{i}.layer_norm."),
    ("feature_norm.", "feature_projection.layer_norm."),
    ("feature_projection.", "feature_projection.projection."),
    ("mask_embedding", "masked_spec_embed"),
    ("context.positional.conv.weight_g", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    ("context.positional.conv.weight_v", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    ("context.positional.conv.weight_g", "encoder.pos_conv_embed.conv.weight_g"),  # before torch parametrizations
    ("context.positional.conv.weight_v", "encoder.pos_conv_embed.conv.weight_v"),
    ("context.positional.conv.bias", "encoder.pos_conv_embed.conv.bias"),
    ("context.layer_norm.", "encoder.layer_norm."),
    *transformer_layer_pairs("encoder.layers", "attention", "out_proj", "layer_norm",
                             "feed_forward.intermediate_dense", "feed_forward.output_dense", "final_layer_norm"),
])
MODEL_TYPES = ("wav2vec2", "hubert")
CONV_NORMS = {"group": "group_norm_first", "layer": "layer_norm"}


def is_hf_directory(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def read_weights(directory: Path) -> dict[str, Tensor]:
    """``model.safetensors``, ``pytorch_model.bin`` or their sharded form (an index naming the shards)."""
    from safetensors.torch import load_file

    for index_name, reader in (("model.safetensors.index.json", load_file),
                               ("pytorch_model.bin.index.json", read_torch_file)):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in reader(str(directory / shard)).items()}
    if (directory / "model.safetensors").is_file():
        return load_file(str(directory / "model.safetensors"))
    if (directory / "pytorch_model.bin").is_file():
        return read_torch_file(directory / "pytorch_model.bin")
    raise InteropError(f"{directory}: no model.safetensors or pytorch_model.bin")


def encoder_config(config: dict[str, Any], where: str, normalize: bool) -> EncoderConfig:
    """Our ``EncoderConfig`` for an HF ``config.json``; settings we cannot compute stop naming the key."""
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise InteropError(f"{where}: model_type={model_type!r} cannot be represented; audiossl reads {MODEL_TYPES}")
    require(config.get("hidden_act", "gelu"), "gelu", "hidden_act", where)
    require(config.get("feat_extract_activation", "gelu"), "gelu", "feat_extract_activation", where,
            "it is also the positional convolution's activation")
    require(float(config.get("layer_norm_eps", 1e-5)), 1e-5, "layer_norm_eps", where)
    require(config.get("add_adapter", False), False, "add_adapter", where)
    require(config.get("adapter_attn_dim"), None, "adapter_attn_dim", where)
    if model_type == "hubert":
        require(config.get("feat_proj_layer_norm", True), True, "feat_proj_layer_norm", where)
        require(config.get("conv_pos_batch_norm", False), False, "conv_pos_batch_norm", where)
    norm = get_key(config, "feat_extract_norm", where)
    if norm not in CONV_NORMS:
        raise InteropError(f"{where}: feat_extract_norm={norm!r} cannot be represented; "
                           f"expected one of {list(CONV_NORMS)}")
    dims, kernels, strides = (get_key(config, key, where) for key in ("conv_dim", "conv_kernel", "conv_stride"))
    if not len(dims) == len(kernels) == len(strides) == config.get("num_feat_extract_layers", len(dims)):
        raise InteropError(f"{where}: conv_dim, conv_kernel, conv_stride and num_feat_extract_layers disagree")
    return EncoderConfig(
        name=f"hf-{model_type}", conv_layers=[[int(d), int(k), int(s)] for d, k, s in zip(dims, kernels, strides)],
        conv_norm=CONV_NORMS[norm], conv_bias=bool(config.get("conv_bias", False)), conv_activation="gelu",
        normalize_waveform=normalize, model_dim=int(get_key(config, "hidden_size", where)),
        feature_dropout=float(config.get("feat_proj_dropout", 0.0)), context="transformer",
        num_layers=int(get_key(config, "num_hidden_layers", where)), dropout=float(config.get("hidden_dropout", 0.1)),
        num_heads=int(get_key(config, "num_attention_heads", where)),
        ffn_dim=int(get_key(config, "intermediate_size", where)),
        attention_dropout=float(config.get("attention_dropout", 0.1)),
        activation_dropout=float(config.get("activation_dropout", 0.1)), layerdrop=float(config.get("layerdrop", 0.1)),
        norm_first=bool(config.get("do_stable_layer_norm", False)),
        pos_conv_kernel=int(get_key(config, "num_conv_pos_embeddings", where)),
        pos_conv_groups=int(get_key(config, "num_conv_pos_embedding_groups", where)),
    ).validate()


def _normalizes(directory: Path) -> bool:
    """HF models do not normalise; their processor does, as ``preprocessor_config.json`` says (absent: no)."""
    path = directory / "preprocessor_config.json"
    return bool(json.loads(path.read_text()).get("do_normalize", False)) if path.is_file() else False


def _ctc_head(heads: dict[str, Tensor], config: dict[str, Any], directory: Path) -> CTCHead:
    vocab_path = directory / "vocab.json"
    tokens = None
    if vocab_path.is_file():
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        if not all(isinstance(v, int) for v in vocab.values()):
            raise InteropError(f"{vocab_path}: a nested (per-language) vocabulary cannot be read; expected token: id")
        tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
        if [vocab[t] for t in tokens] != list(range(len(tokens))) or len(tokens) != heads["lm_head.weight"].shape[0]:
            raise InteropError(f"{vocab_path}: ids must be 0..{heads['lm_head.weight'].shape[0] - 1} "
                               f"(lm_head's outputs), got {len(tokens)} tokens")
    tokenizer = directory / "tokenizer_config.json"
    delimiter = json.loads(tokenizer.read_text()).get("word_delimiter_token", "|") if tokenizer.is_file() else "|"
    return CTCHead(heads.pop("lm_head.weight"), heads.pop("lm_head.bias"), tokens,
                   blank=int(config.get("pad_token_id", 0)), word_delimiter=delimiter or "|",
                   dropout=float(config.get("final_dropout", 0.0)))


def _pretraining_head(heads: dict[str, Tensor], config: dict[str, Any]) -> PretrainingHead:
    groups = int(config.get("num_codevector_groups", 2))
    codevectors = heads.pop("quantizer.codevectors")
    return PretrainingHead(
        codebook=codevectors.reshape(groups, codevectors.shape[1] // groups, codevectors.shape[2]),
        entry_proj_weight=heads.pop("quantizer.weight_proj.weight"),
        entry_proj_bias=heads.pop("quantizer.weight_proj.bias"),
        target_proj_weight=heads.pop("project_q.weight"), target_proj_bias=heads.pop("project_q.bias"),
        final_proj_weight=heads.pop("project_hid.weight"), final_proj_bias=heads.pop("project_hid.bias"),
        logit_temperature=float(config.get("contrastive_logits_temperature", 0.1)),
        num_negatives=int(config.get("num_negatives", 100)))


def load_hf(directory: str | Path) -> PeerModel:
    """Import an HF directory: the encoder, and the CTC or pretraining head when the model has one."""
    directory = Path(directory)
    where = str(directory / "config.json")
    config = json.loads((directory / "config.json").read_text())
    state = read_weights(directory)
    prefix = f"{config.get('model_type')}."
    encoder_state, heads = split_prefix(state, prefix) if any(k.startswith(prefix) for k in state) else (state, {})
    encoder = build_loaded_encoder(encoder_config(config, where, _normalizes(directory)),
                                   KEYS.to_ours(encoder_state, str(directory)), str(directory))
    peer = PeerModel(str(directory), "hf", encoder)
    if "lm_head.weight" in heads:
        peer.ctc_head = _ctc_head(heads, config, directory)
    if "quantizer.codevectors" in heads:
        peer.pretraining = _pretraining_head(heads, config)
    if heads:
        peer.notes.append(f"ignored head weights {sorted(heads)[:4]}")
    if "masked_spec_embed" not in encoder_state:
        peer.notes.append("no masked_spec_embed (mask_time_prob was 0): the mask embedding is freshly initialised")
    return peer


def hf_config(encoder: Encoder, ctc: CTCHead | None) -> dict[str, Any]:
    """``Wav2Vec2Config`` fields for our encoder (``mask_time_prob`` > 0 so HF keeps the mask embedding)."""
    cfg = encoder.config
    fields: dict[str, Any] = dict(
        conv_dim=[c for c, _, _ in cfg.conv_layers], conv_kernel=[k for _, k, _ in cfg.conv_layers],
        conv_stride=[s for _, _, s in cfg.conv_layers], conv_bias=cfg.conv_bias,
        feat_extract_norm="group" if cfg.conv_norm == "group_norm_first" else "layer",
        feat_extract_activation="gelu", hidden_act="gelu", hidden_size=cfg.model_dim,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, intermediate_size=cfg.ffn_dim,
        hidden_dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout, feat_proj_dropout=cfg.feature_dropout, layerdrop=cfg.layerdrop,
        do_stable_layer_norm=cfg.norm_first, num_conv_pos_embeddings=cfg.pos_conv_kernel,
        num_conv_pos_embedding_groups=cfg.pos_conv_groups, layer_norm_eps=1e-5, mask_time_prob=0.05,
        architectures=["Wav2Vec2ForCTC" if ctc else "Wav2Vec2Model"])
    if ctc is not None:
        fields.update(vocab_size=ctc.weight.shape[0], pad_token_id=ctc.blank, final_dropout=ctc.dropout)
    return fields


def export_hf(encoder: Encoder, out_dir: str | Path, ctc: CTCHead | None = None) -> Path:
    """Write an HF directory: ``Wav2Vec2Model``, or ``Wav2Vec2ForCTC`` with its tokenizer when ``ctc`` is given.

    Audio is assumed at 16 kHz; ``preprocessor_config.json`` asks for per-utterance normalisation exactly
    when our encoder normalises (``normalize_waveform``).
    """
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

    exportable(encoder.config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = KEYS.to_theirs(encoder.state_dict())
    if ctc is not None:
        tensors = {f"wav2vec2.{k}": v for k, v in tensors.items()}
        tensors |= {"lm_head.weight": ctc.weight, "lm_head.bias": ctc.bias}
    save_file({k: v.detach().float().contiguous().clone() for k, v in tensors.items()},
              str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    Wav2Vec2Config(**hf_config(encoder, ctc)).to_json_file(str(out_dir / "config.json"))
    processor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16_000, padding_value=0.0,
                                         do_normalize=encoder.config.normalize_waveform,
                                         return_attention_mask=encoder.config.conv_norm == "layer_norm")
    processor.save_pretrained(str(out_dir))
    if ctc is not None:
        _write_tokenizer(ctc, out_dir)
    return out_dir


def _write_tokenizer(ctc: CTCHead, out_dir: Path) -> None:
    """``vocab.json`` in output order plus the tokenizer config, written by HF's own tokenizer class."""
    from transformers import Wav2Vec2CTCTokenizer

    if ctc.tokens is None:
        raise InteropError("a CTC head without its token list cannot be exported")
    vocab_path = out_dir / "vocab.json"
    vocab_path.write_text(json.dumps({token: i for i, token in enumerate(ctc.tokens)}, ensure_ascii=False),
                          encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab_path), pad_token=ctc.tokens[ctc.blank],
                                     word_delimiter_token=ctc.word_delimiter, do_lower_case=False)
    tokenizer.save_pretrained(str(out_dir))


__all__ = ["KEYS", "encoder_config", "export_hf", "hf_config", "is_hf_directory", "load_hf", "read_weights"]
