"""The ``gpu`` training config, by path: ``msftnet/configs/gpu.py``."""

from msftnet.configs.gpu import get_config  # noqa: F401

__all__ = ["get_config"]
