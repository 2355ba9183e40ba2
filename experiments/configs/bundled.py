"""The ``bundled`` training config, by path: ``msftnet/configs/bundled.py``."""

from msftnet.configs.bundled import get_config  # noqa: F401

__all__ = ["get_config"]
