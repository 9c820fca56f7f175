"""Typed configs: dataclasses are the schema, YAML in ``conf/`` mirrors them, hydra merges overrides.

Every CLI turns its hydra node into dataclasses with ``to_config`` before doing any work, so a wrong key
or a wrong type fails at once with the dotted key in the message (``optim.lr: Value 'x' could not be
converted to Float``), never hours into a run.
"""

from __future__ import annotations

from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config key or value is invalid; the message names the dotted key."""


def to_config(cls: type[T], node: Any, key: str) -> T:
    """Validate ``node`` (a DictConfig, dict or None) against dataclass ``cls`` and instantiate it.

    ``key`` is where the node sits in the full config (``"objective"``), used in error messages.
    Unknown keys and values of the wrong type raise ``ConfigError``. Every config class checks its values in
    one method, ``validate()``, which raises ``ConfigError`` naming the key and returns the config; it runs
    here, so whatever a command builds from hydra is checked before any work starts.
    """
    schema = OmegaConf.structured(cls)
    if node is None:
        node = {}
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    try:
        merged = OmegaConf.merge(schema, node)
        config = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        inner = getattr(error, "full_key", None) or getattr(error, "key", None) or ""
        where = f"{key}.{inner}" if inner else key
        message = getattr(error, "msg", None) or str(error).splitlines()[0]
        raise ConfigError(f"invalid config at '{where}': {message}") from None
    validate = getattr(config, "validate", None)
    return validate() if callable(validate) else config  # type: ignore[return-value]


def check_choice(value: str, choices: list[str] | tuple[str, ...], key: str) -> str:
    """Fail with the key and the valid choices when ``value`` is not one of them."""
    if value not in choices:
        raise ConfigError(f"invalid config at '{key}': {value!r} is not one of {list(choices)}")
    return value


def check_positive(value: float, key: str, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"invalid config at '{key}': must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value
