"""torchaudio's ``wav2vec2_model`` in and out.

torchaudio has no file format of its own: a model is ``wav2vec2_model(**kwargs)`` plus a state dict. We
read and write a ``.pt`` holding ``{"format": "torchaudio.wav2vec2_model", "config": kwargs, "state_dict":
...}`` (and ``tokens`` / ``blank`` when ``aux`` is a CTC head), and convert live models too
(``torchaudio_kwargs_of`` reads the kwargs back from a built model, e.g. one of ``torchaudio.pipelines``).

Layer correspondence: ``model.extract_features`` returns each Transformer layer's output, which equals our
``hidden_states[1:]`` except that for pre-LN models torchaudio leaves the final LayerNorm to ``forward``
(our last hidden state has it, as the ``EncoderOutput`` contract says it equals ``features``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from audiossl.models.encoder import Encoder, EncoderConfig
from audiossl.models.interop.common import (
    CTCHead,
    InteropError,
    KeyMap,
    PeerModel,
    build_loaded_encoder,
    exportable,
    get_key,
    read_torch_file,
    split_prefix,
    transformer_layer_pairs,
)

FORMAT = "torchaudio.wav2vec2_model"
KEYS = KeyMap([
    ("feature_encoder.layers.{i}.conv.", "feature_extractor.conv_layers.{i}.conv."),
    ("feature_encoder.layers.{i}.norm.", "feature_extractor.conv_layers.{i}.layer_norm."),
    ("feature_norm.", "encoder.feature_projection.layer_norm."),
    ("feature_projection.", "encoder.feature_projection.projection."),
    ("context.positional.conv.weight_g", "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0"),
    ("context.positional.conv.weight_v", "encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1"),
    ("context.positional.conv.weight_g", "encoder.transformer.pos_conv_embed.conv.weight_g"),
    ("context.positional.conv.weight_v", "encoder.transformer.pos_conv_embed.conv.weight_v"),
    ("context.positional.conv.bias", "encoder.transformer.pos_conv_embed.conv.bias"),
    ("context.layer_norm.", "encoder.transformer.layer_norm."),
    *transformer_layer_pairs("encoder.transformer.layers", "attention", "out_proj", "layer_norm",
                             "feed_forward.intermediate_dense", "feed_forward.output_dense", "final_layer_norm"),
])
KWARGS = ("extractor_mode", "extractor_conv_layer_config", "extractor_conv_bias", "encoder_embed_dim",
          "encoder_projection_dropout", "encoder_pos_conv_kernel", "encoder_pos_conv_groups", "encoder_num_layers",
          "encoder_num_heads", "encoder_attention_dropout", "encoder_ff_interm_features",
          "encoder_ff_interm_dropout", "encoder_dropout", "encoder_layer_norm_first", "encoder_layer_drop",
          "aux_num_out")
"""``torchaudio.models.wav2vec2_model``'s arguments; any other (e.g. WavLM's buckets) cannot be represented."""
CONV_NORMS = {"group_norm": "group_norm_first", "layer_norm": "layer_norm"}


def encoder_config(kwargs: dict[str, Any], where: str, normalize: bool = False) -> EncoderConfig:
    unknown = sorted(set(kwargs) - set(KWARGS))
    if unknown:
        raise InteropError(f"{where}: {unknown[0]} cannot be represented (not a wav2vec2_model argument)")
    mode = get_key(kwargs, "extractor_mode", where)
    if mode not in CONV_NORMS:
        raise InteropError(f"{where}: extractor_mode={mode!r} cannot be represented; expected {list(CONV_NORMS)}")
    layers = kwargs.get("extractor_conv_layer_config") or [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    return EncoderConfig(
        name="torchaudio-wav2vec2", conv_layers=[[int(v) for v in spec] for spec in layers],
        conv_norm=CONV_NORMS[mode], conv_bias=bool(get_key(kwargs, "extractor_conv_bias", where)),
        normalize_waveform=normalize, model_dim=int(get_key(kwargs, "encoder_embed_dim", where)),
        feature_dropout=float(kwargs.get("encoder_projection_dropout", 0.1)), context="transformer",
        num_layers=int(get_key(kwargs, "encoder_num_layers", where)), dropout=float(kwargs.get("encoder_dropout", 0.1)),
        num_heads=int(get_key(kwargs, "encoder_num_heads", where)),
        ffn_dim=int(get_key(kwargs, "encoder_ff_interm_features", where)),
        attention_dropout=float(kwargs.get("encoder_attention_dropout", 0.1)),
        activation_dropout=float(kwargs.get("encoder_ff_interm_dropout", 0.0)),
        layerdrop=float(kwargs.get("encoder_layer_drop", 0.1)),
        norm_first=bool(get_key(kwargs, "encoder_layer_norm_first", where)),
        pos_conv_kernel=int(get_key(kwargs, "encoder_pos_conv_kernel", where)),
        pos_conv_groups=int(get_key(kwargs, "encoder_pos_conv_groups", where)),
    ).validate()


def from_torchaudio(state_dict: dict[str, Tensor], kwargs: dict[str, Any], source: str = "torchaudio",
                    tokens: list[str] | None = None, blank: int = 0, normalize: bool = False) -> PeerModel:
    """Import a ``wav2vec2_model(**kwargs)`` state dict; ``aux`` becomes a CTC head (over ``tokens``).

    ``normalize``: the model expects per-utterance normalised input (torchaudio leaves that to the caller).
    """
    aux, encoder_state = split_prefix(state_dict, "aux.")
    config = encoder_config(kwargs, source, normalize)
    encoder = build_loaded_encoder(config, KEYS.to_ours(encoder_state, source), source)
    peer = PeerModel(source, "torchaudio", encoder,
                     notes=["torchaudio keeps no mask embedding: it is freshly initialised"])
    if aux:
        peer.ctc_head = CTCHead(aux["weight"], aux["bias"], tokens, blank=blank)
    return peer


def torchaudio_kwargs_of(model: nn.Module) -> dict[str, Any]:
    """The ``wav2vec2_model`` arguments of a built torchaudio ``Wav2Vec2Model`` (read from its modules)."""
    convs = [layer.conv for layer in model.feature_extractor.conv_layers]
    first_norm = model.feature_extractor.conv_layers[0].layer_norm
    transformer = model.encoder.transformer
    layer = transformer.layers[0]
    return {
        "extractor_mode": "group_norm" if isinstance(first_norm, nn.GroupNorm) else "layer_norm",
        "extractor_conv_layer_config": [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs],
        "extractor_conv_bias": convs[0].bias is not None,
        "encoder_embed_dim": model.encoder.feature_projection.projection.out_features,
        "encoder_projection_dropout": model.encoder.feature_projection.dropout.p,
        "encoder_pos_conv_kernel": transformer.pos_conv_embed.kernel_size,
        "encoder_pos_conv_groups": transformer.pos_conv_embed.conv.groups,
        "encoder_num_layers": len(transformer.layers),
        "encoder_num_heads": layer.attention.num_heads,
        "encoder_attention_dropout": layer.attention.dropout,
        "encoder_ff_interm_features": layer.feed_forward.intermediate_dense.out_features,
        "encoder_ff_interm_dropout": layer.feed_forward.intermediate_dropout.p,
        "encoder_dropout": layer.dropout.p,
        "encoder_layer_norm_first": layer.layer_norm_first,
        "encoder_layer_drop": transformer.layer_drop,
        "aux_num_out": model.aux.out_features if model.aux is not None else None,
    }


def is_torchaudio_file(contents: Any) -> bool:
    return isinstance(contents, dict) and contents.get("format") == FORMAT


def load_torchaudio(path: str | Path, contents: dict[str, Any] | None = None) -> PeerModel:
    """Import one of our torchaudio files (see the module docstring)."""
    contents = contents if contents is not None else read_torch_file(path)
    if not is_torchaudio_file(contents):
        raise InteropError(f"{path}: not a {FORMAT} file (expected keys format, config, state_dict)")
    return from_torchaudio(contents["state_dict"], contents["config"], str(path), contents.get("tokens"),
                           int(contents.get("blank", 0)), bool(contents.get("normalize_waveform", False)))


def torchaudio_kwargs(config: EncoderConfig, aux_num_out: int | None = None) -> dict[str, Any]:
    """``wav2vec2_model`` arguments that rebuild our encoder (plus a CTC head of ``aux_num_out`` outputs)."""
    exportable(config)
    return {
        "extractor_mode": "group_norm" if config.conv_norm == "group_norm_first" else "layer_norm",
        "extractor_conv_layer_config": [tuple(spec) for spec in config.conv_layers],
        "extractor_conv_bias": config.conv_bias, "encoder_embed_dim": config.model_dim,
        "encoder_projection_dropout": config.feature_dropout, "encoder_pos_conv_kernel": config.pos_conv_kernel,
        "encoder_pos_conv_groups": config.pos_conv_groups, "encoder_num_layers": config.num_layers,
        "encoder_num_heads": config.num_heads, "encoder_attention_dropout": config.attention_dropout,
        "encoder_ff_interm_features": config.ffn_dim, "encoder_ff_interm_dropout": config.activation_dropout,
        "encoder_dropout": config.dropout, "encoder_layer_norm_first": config.norm_first,
        "encoder_layer_drop": config.layerdrop, "aux_num_out": aux_num_out,
    }


def export_torchaudio(encoder: Encoder, ctc: CTCHead | None = None) -> dict[str, Any]:
    """Our torchaudio file's contents: ``wav2vec2_model(**out["config"]).load_state_dict(out["state_dict"])``.

    The mask embedding has no torchaudio counterpart and is left out; ``normalize_waveform`` is recorded,
    because torchaudio models do not normalise their input themselves.
    """
    kwargs = torchaudio_kwargs(encoder.config, ctc.weight.shape[0] if ctc else None)
    weights = {k: v for k, v in encoder.state_dict().items() if k != "mask_embedding"}
    state = {k: v.detach().clone() for k, v in KEYS.to_theirs(weights).items()}
    contents: dict[str, Any] = {"format": FORMAT, "config": kwargs, "state_dict": state,
                                "normalize_waveform": encoder.config.normalize_waveform}
    if ctc is not None:
        state |= {"aux.weight": ctc.weight.detach().clone(), "aux.bias": ctc.bias.detach().clone()}
        contents |= {"tokens": ctc.tokens, "blank": ctc.blank}
    return contents


__all__ = ["FORMAT", "KEYS", "encoder_config", "export_torchaudio", "from_torchaudio", "is_torchaudio_file",
           "load_torchaudio", "torchaudio_kwargs", "torchaudio_kwargs_of"]
