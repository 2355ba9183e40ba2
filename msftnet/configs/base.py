"""Fields shared by all training configs (see paper.py, cpu.py, test.py)."""

import ml_collections

from msftnet.geometry import Geometry


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Model (msftnet.model.ReconstructionNet).
  c.width = 64
  c.dropout_rate = 0.2
  c.bfloat16 = False
  # Loss: "physics" (eq. 3 + 0.1 eq. 4), "supervised" (BCE) or "hybrid".
  c.loss = "physics"
  c.binary_weight = 0.1
  c.bce_weight = 1.0
  # Optimiser: "adam" (the paper) or "sgd".
  c.optimizer = "adam"
  c.learning_rate = 1e-3
  c.batch_size = 32                 # global batch, over all devices
  c.total_steps = 1000
  # Procedural data (msftnet.data): 5:1 train/validation split of n_samples.
  c.n_samples = 140_000
  c.data_seed = 0
  c.resolution = 64                 # 192: simulate at 192^3 as the paper
  # The network's grids (msftnet.Geometry): patterns detector_px^2 ->
  # densities target_voxels^3 (powers of two; the paper's 128 and 64).
  c.detector_px = 128
  c.target_voxels = 64
  # The experiment (msftnet.Geometry): simulation box and wavelength (the
  # paper's, Geometry's defaults).
  c.box_nm = Geometry.box_nm
  c.wavelength_nm = Geometry.wavelength_nm
  c.augment = True
  c.data_threads = 1
  # Physics of the data and the loss (msftnet.Geometry): "msft" (the
  # paper's) or "pmsft" (refraction); material "" = the paper's absorption
  # only, or "DELTA,BETA" / "henke:Ag" (msftnet.material.parse_material).
  c.forward_model = "msft"
  c.material = ""
  # Bookkeeping.
  c.seed = 0
  c.log_every = 50
  c.eval_every = 1000
  c.eval_batches = 16
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  c.time_limit_s = 0.0              # > 0: stop (checkpointed) after this long
  return c
