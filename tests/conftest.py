"""Test session set-up: XLA's fast-compile level, a persistent compilation
cache, and the order in which the long tests start.

Training tests compile the same small train step several times (and in
subprocesses); caching compiled executables on disk for the session keeps
the suite inside CI's time budget. Results are unaffected.
"""

import math
import os
import tempfile

# XLA's lowest backend optimisation level for the whole session (and the
# launchers' subprocesses, which inherit the environment): the suite is
# dominated by compiling small programs that then run a few steps; measured
# on 2 cores, a cold suite took 443 s instead of 502 s, a train step
# compiles in about 2/3 of the time. The level changes how fast the code
# runs, not the computation (float32 results may differ in the last bits,
# inside every test's tolerance); production runs keep XLA's default.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()
# One thread per process: two pytest workers plus the launchers'
# subprocesses already fill the 2 cores, and XLA's per-process thread pool
# only adds contention there.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] += " --xla_cpu_multi_thread_eigen=false"

_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), "msftnet-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402

jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


import pytest  # noqa: E402


# The tests that take far longer than the rest on 2 cores (compiles of the
# train step and the reconstruction launchers), longest first; see
# `pytest --durations=25`. They are started first, one pair per worker, and
# the short tests fill in behind them (--dist worksteal in pyproject.toml:
# each worker starts from the front of its half of the collection and an
# idle worker steals from the back of the other's). Started last, the
# longest of them set the length of the run.
_LONG_TESTS = (
    # --launchers only:
    "test_launcher_resume_data_parallel_and_non_finite_loss",
    "test_evaluate_experiment_study",
    "test_make_dataset_round_trip_and_resume",
    "test_msftnet_command_outputs_frames_and_errors",
    # both runs:
    "test_reconstruct_batch_and_single_agree",
    "test_fit_recovers_size_and_prefers_the_true_class",
    "test_predictor_splits_the_batch_over_local_devices",
    "test_demo_end_to_end_with_a_tiny_model",
    "test_show_augmentations_launcher",
    "test_fit_launcher",
    "test_refinement_lowers_the_loss_and_finds_facets",
    "test_gradients_are_finite_and_reach_every_parameter",
    "test_split_shards_and_epochs",
    "test_reconstruct_returns_ranked_candidates_and_finds_the_centre",
    "test_random_filter_choice_is_uniform_and_deterministic",
    "test_multi_start_keeps_the_best_start",
    "test_tiny_network_forward_and_modes",
)


LAUNCHERS_OPTION = "--launchers"


def pytest_addoption(parser):
  parser.addoption(
      LAUNCHERS_OPTION, action="store_true",
      help="also run the end-to-end launcher tests (marked 'launcher'): "
           "the README's test command and CI do.")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "launcher: an end-to-end launcher run in subprocesses "
      "(training on two processes, the evaluation study, ...); minutes on "
      f"2 cores, deselected unless {LAUNCHERS_OPTION} is given.")


def pytest_terminal_summary(terminalreporter, config):
  if not config.getoption(LAUNCHERS_OPTION):
    terminalreporter.write_line(
        "The end-to-end launcher tests (marker 'launcher') were deselected; "
        f"`python -m pytest tests {LAUNCHERS_OPTION}` (the README's test "
        "command, run by CI) runs them too.", yellow=True)


def pytest_collection_modifyitems(config, items):
  """Deselect the launcher tests unless asked for; put the long tests at
  the front of both halves of the collection."""
  if not config.getoption(LAUNCHERS_OPTION):
    kept = [it for it in items if it.get_closest_marker("launcher") is None]
    if len(kept) < len(items):
      config.hook.pytest_deselected(
          items=[it for it in items if it.get_closest_marker("launcher")])
      items[:] = kept
  rank = {name: i for i, name in enumerate(_LONG_TESTS)}
  long = sorted((it for it in items if it.originalname in rank),
                key=lambda it: rank[it.originalname])
  rest = [it for it in items if it.originalname not in rank]
  # Snake order over the two halves: 0, 3, 4, 7, ... | 1, 2, 5, 6, ...
  first = [t for i, t in enumerate(long) if i % 4 in (0, 3)]
  second = [t for i, t in enumerate(long) if i % 4 in (1, 2)]
  cut = max(len(items) // 2 - len(first), 0)
  items[:] = first + rest[:cut] + second + rest[cut:]


def _write_tiny_model(tmp_path_factory, name, geometry=None):
  """An untrained width-2 network (on ``geometry``'s grids; default the
  paper's) saved as a model directory.

  Its variables are drawn directly in the shapes ``jax.eval_shape`` gives
  (LeCun-normal kernels, zero biases, unit batch statistics) instead of
  running ``init``: eager initialisation compiles every layer of the 64^3
  decoder op by op (90 s on 2 cores).
  """
  import numpy as np
  from msftnet import model as model_lib
  from msftnet import pretrained
  net = model_lib.build(2, geometry=geometry)
  shapes = jax.eval_shape(lambda: net.init(
      {"params": jax.random.key(0)}, model_lib.dummy_input(net), train=False))
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(
          np.float32)
    if "var" in name or "scale" in name:
      return np.ones(leaf.shape, np.float32)
    return np.zeros(leaf.shape, np.float32)

  variables = jax.tree_util.tree_map_with_path(draw, shapes)
  path = tmp_path_factory.mktemp("models") / name
  info = {"width": 2}
  if geometry is not None:
    info["geometry"] = geometry.to_dict()
  pretrained.save_model(path, variables, info, "# tiny test model\n")
  return str(path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
  """An untrained width-2 network on the paper's grids (128 px -> 64^3)."""
  return _write_tiny_model(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
  """The same on small grids (64 px -> 32^3): programs that compile fast,
  for tests of behaviour that does not depend on the grid."""
  from msftnet import Geometry
  return _write_tiny_model(tmp_path_factory, "small",
                           Geometry(n_voxels=32, detector_px=64))


def solid_volume(name: str, size: float, n: int = 32, **params):
  """The rasterised solid ``name`` (``msftnet.solids.SolidParams`` with
  ``size`` and ``params``) on an ``n``^3 grid, numpy float32."""
  import numpy as np
  from msftnet import solids
  from msftnet.raster import rasterize
  p = solids.SolidParams(name, size=size, **params)
  return np.asarray(rasterize(*solids.half_spaces(p), n))


def required_import(name: str):
  """Import a module that a reference test needs: skipped where it is
  missing, except in CI (``CI=true``), where a missing reference fails the
  test instead of hiding it."""
  import importlib
  try:
    return importlib.import_module(name)
  except ImportError as e:
    if os.environ.get("CI", "").lower() in ("true", "1"):
      pytest.fail(f"{name} is missing ({e}), expected it installed in CI "
                  "(pip install -e '.[test]').", pytrace=False)
    pytest.skip(f"{name} is not installed.")


def small_geometry(n: int, m: int, **kw):
  """A small grid whose detector reaches just past the Ewald sphere (a box
  small enough for the grid's Nyquist limit: q_max dr <= pi)."""
  import numpy as np
  from msftnet import Geometry
  k = 2 * np.pi / kw.get("wavelength_nm", 13.5)
  return Geometry(n_voxels=n, box_nm=kw.pop("box_nm", min(60.0, 6.2 * n)),
                  detector_px=m, q_step_per_nm=1.05 * k / (m // 2), **kw)


def sphere_form_factor(q, radius):
  """``F(q) / V`` of a homogeneous sphere (Born), 1 at ``q = 0``; ``q`` in
  inverse units of ``radius`` (exact to 1e-6 where ``q radius < 1e-3``)."""
  import numpy as np
  x = np.maximum(np.asarray(q) * radius, 1e-3)
  return 3 * (np.sin(x) - x * np.cos(x)) / x**3


def hand_q(row, col, centre, pixel_um, distance_mm, wavelength_nm):
  """``(qy, qx)`` in nm^-1 of detector pixel ``(row, col)``, worked out by
  hand: its offset from the beam in the detector plane (y along the rows, x
  along the columns) -> the scattering angle 2 theta and the azimuth phi ->
  the transverse momentum transfer ``k sin(2 theta)`` along phi."""
  y_mm = (row - centre[0]) * pixel_um * 1e-3
  x_mm = (col - centre[1]) * pixel_um * 1e-3
  two_theta = math.atan(math.hypot(x_mm, y_mm) / distance_mm)
  phi = math.atan2(y_mm, x_mm)
  q = 2 * math.pi / wavelength_nm * math.sin(two_theta)
  return q * math.sin(phi), q * math.cos(phi)


def hand_pixel(qy, qx, centre, pixel_um, distance_mm, wavelength_nm):
  """The inverse, by hand: ``(row, col)`` (fractional) of the detector point
  that sees ``(qy, qx)``: ``2 theta = asin(|q| / k)``, at ``D tan(2 theta)``
  from the beam along the azimuth of q."""
  import numpy as np
  q = np.hypot(qy, qx)
  two_theta = np.arcsin(np.minimum(q * wavelength_nm / (2 * math.pi), 1.0))
  rho_px = distance_mm * np.tan(two_theta) / (pixel_um * 1e-3)
  cos_phi = np.divide(qx, q, out=np.zeros_like(q), where=q > 0)
  sin_phi = np.divide(qy, q, out=np.zeros_like(q), where=q > 0)
  return centre[0] + rho_px * sin_phi, centre[1] + rho_px * cos_phi
