"""msftnet: differentiable wide-angle scattering (MSFT) and physics-informed
3D reconstruction of nanoparticles from single-shot FEL diffraction patterns.

Method: Stielow & Scheel, Phys. Rev. E 103, 053312 (2021),
doi:10.1103/PhysRevE.103.053312, arXiv:2101.09136.
"""

from msftnet import paper_io
from msftnet.geometry import Geometry
from msftnet.material import Material
from msftnet.msft import PAPER_LOSS_EPS
from msftnet.msft import absorb
from msftnet.msft import field
from msftnet.msft import intensity
from msftnet.msft import log_pattern
from msftnet.msft import msft
from msftnet.msft import pmsft
from msftnet.msft import simulate_pattern

__version__ = "0.1.0"

#: Submodules reached as attributes on first use (``msftnet.reconstruct``,
#: ``msftnet.data``, ...), so ``import msftnet`` stays light. ``msftnet.msft``
#: is the function; its module is ``importlib.import_module("msftnet.msft")``.
_SUBMODULES = ("augment", "centre", "data", "detector", "evaluation",
               "fitting", "geometry",
               "losses", "material", "measured", "metrics", "model",
               "polytope", "pretrained", "raster", "reconstruct", "records",
               "report", "run_report", "runs", "shape_net",
               "solids", "train")


def __getattr__(name):
  if name in _SUBMODULES:
    import importlib
    return importlib.import_module(f"msftnet.{name}")
  raise AttributeError(f"module 'msftnet' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_SUBMODULES))

__all__ = [
    "Geometry",
    "Material",
    "PAPER_LOSS_EPS",
    "absorb",
    "field",
    "intensity",
    "log_pattern",
    "msft",
    "paper_io",
    "pmsft",
    "simulate_pattern",
]
