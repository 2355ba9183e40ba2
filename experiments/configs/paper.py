"""The ``paper`` training config, by path: ``msftnet/configs/paper.py``."""

from msftnet.configs.paper import get_config  # noqa: F401

__all__ = ["get_config"]
