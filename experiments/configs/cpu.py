"""The ``cpu`` training config, by path: ``msftnet/configs/cpu.py``."""

from msftnet.configs.cpu import get_config  # noqa: F401

__all__ = ["get_config"]
