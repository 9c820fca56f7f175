"""Encoders: conv feature encoder over the waveform + context network -> ``EncoderOutput``."""

from audiossl.models.encoder import Encoder, EncoderConfig, build_encoder
from audiossl.models.output import EncoderOutput

__all__ = ["Encoder", "EncoderConfig", "EncoderOutput", "build_encoder"]
