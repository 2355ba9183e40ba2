"""The ``test`` training config, by path: ``msftnet/configs/test.py``."""

from msftnet.configs.test import get_config  # noqa: F401

__all__ = ["get_config"]
