"""The refinement: a reconstruction moved to explain the measured pattern.

One room per concern (README, "Layout"):

* :mod:`msftnet.refine.measurement`: the model of a measurement (density ->
  normalised log pattern with its dark level, the masks, the losses,
  the input checks): everything a refiner or a fitter compares with data;
* :mod:`msftnet.refine.base`: :class:`RefineConfig`, the result
  :class:`Refined` every method returns, and the registry of methods
  (:data:`METHODS`, :func:`register`, :func:`get`);
* one module per method: :mod:`msftnet.refine.polytope` (``"polytope"``,
  the default) and :mod:`msftnet.refine.voxels` (``"voxels"``);
* :mod:`msftnet.refine.trust`: how far an answer can be trusted (ranking
  of candidates, warnings).

A new method is a module with a ``refine_one`` registered under its name,
imported below.
"""

from msftnet.refine import measurement
from msftnet.refine import trust
from msftnet.refine.base import METHODS
from msftnet.refine.base import RefineConfig
from msftnet.refine.base import Refined
from msftnet.refine.base import get
from msftnet.refine.base import register
from msftnet.refine import polytope
from msftnet.refine import voxels

__all__ = ["measurement", "trust", "polytope", "voxels", "RefineConfig",
           "Refined", "METHODS", "get", "register"]
