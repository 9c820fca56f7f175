"""audiossl: self-supervised speech representation learning on raw waveforms.

Data flows one way: ``data -> models -> objectives -> training -> downstream -> reports``;
``cli`` holds thin hydra entry points over all of them. A module never imports a layer
that comes after its own.
"""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
