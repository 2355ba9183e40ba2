"""Tests of the network and the losses (msftnet.model, msftnet.losses)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import Geometry
from msftnet import losses
from msftnet import model
from msftnet import simulate_pattern


def test_paper_width_parameter_count_and_shapes_without_allocation():
  net = model.build("paper")
  counts = model.count_params(net)
  assert 190e6 < counts["params"] < 210e6          # "about 200 million"
  out = jax.eval_shape(
      lambda: net.init_with_output({"params": jax.random.key(0)},
                                   jnp.zeros((4, 128, 128, 1)))[0])
  assert out.shape == (4, 64, 64, 64, 1) and out.dtype == jnp.float32
  assert model.count_params(model.build(2))["params"] < 1e6


def test_the_grids_come_from_the_geometry():
  # Smaller grids drop an encoder block and a decoder stage; the paper's
  # geometry gives the paper's network.
  small = Geometry(n_voxels=32, detector_px=64)
  net = model.build(2, geometry=small)
  assert (net.detector_px, net.n_voxels) == (64, 32)
  out = jax.eval_shape(lambda: net.init_with_output(
      {"params": jax.random.key(0)}, model.dummy_input(net), train=False)[0])
  assert out.shape == (1, 32, 32, 32, 1)
  assert model.build(2, geometry=Geometry()) == model.build(2)
  assert (model.count_params(model.build(2, geometry=small))["params"]
          < model.count_params(model.build(2))["params"])
  with pytest.raises(ValueError, match=r"\[B, 64, 64, 1\], got \(1, 128, 128"):
    jax.eval_shape(lambda: net.init({"params": jax.random.key(0)},
                                    jnp.zeros((1, 128, 128, 1))))
  with pytest.raises(ValueError, match="powers of two"):
    model.build(2, geometry=Geometry(n_voxels=48, detector_px=96))


def test_tiny_network_forward_and_modes(tiny_model_dir):
  # One jitted forward per mode (eager flax at 64^3 compiles every op on its
  # own and took 100 s); the eval-mode variables come from the shared tiny
  # model directory.
  from msftnet import pretrained
  predictor = pretrained.load_model(tiny_model_dir)
  v = predictor.variables
  net = model.build("tiny")
  x = jnp.asarray(np.random.default_rng(0).random((2, 128, 128)), jnp.float32)
  y = predictor(x)                                  # jitted, train=False
  assert y.shape == (2, 64, 64, 64)
  assert float(y.min()) >= 0 and float(y.max()) <= 1
  # Dropout is wired into the convolution blocks in training mode (a single
  # block: compiling the whole train-mode network costs 20 s; the training
  # tests run it).
  block = model._ConvBlock(3, (3, 3), dropout_rate=0.5)
  bv = block.init(jax.random.key(0), x[..., None], train=False)
  apply = jax.jit(lambda k: block.apply(bv, x[..., None], train=True,
                                        rngs={"dropout": k},
                                        mutable=["batch_stats"])[0])
  a, b = apply(jax.random.key(1)), apply(jax.random.key(2))
  assert not np.allclose(a, b) and np.mean(np.asarray(a) == 0) > 0.3
  with pytest.raises(ValueError, match=r"\[B, 128, 128, 1\]"):
    net.apply(v, jnp.zeros((2, 64, 64)), train=False)
  with pytest.raises(ValueError, match="unknown width preset"):
    model.build("huge")


def test_dropout_draws_flax_masks():
  import flax.linen as nn
  x = jnp.asarray(np.random.default_rng(0).random((2, 5, 4, 3)), jnp.float32)
  key = {"dropout": jax.random.key(7)}
  ours = model.Dropout(0.3).apply({}, x, deterministic=False, rngs=key)
  flax_ = nn.Dropout(0.3).apply({}, x, deterministic=False, rngs=key)
  np.testing.assert_array_equal(ours, flax_)
  assert 0 < np.mean(np.asarray(ours) == 0) < 0.6
  np.testing.assert_array_equal(
      model.Dropout(0.3).apply({}, x, deterministic=True), x)


def test_shifted_conv_equals_lax_conv():
  rng = np.random.default_rng(0)
  for c_in, c_out in [(1, 1), (2, 3), (4, 4)]:
    x = jnp.asarray(rng.random((2, 9, 8, 7, c_in)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, c_in, c_out)), jnp.float32)
    want = jax.lax.conv_general_dilated(
        x, k, (1, 1, 1), "SAME", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    np.testing.assert_allclose(model.shifted_conv3d(x, k), want, rtol=1e-5,
                               atol=1e-5)


def test_binary_bce_iou_on_known_cases():
  half = jnp.full((1, 4, 4, 4), 0.5)
  assert float(losses.binary_loss(half)) == pytest.approx(0.0625)
  assert float(losses.binary_loss(jnp.round(half + 0.1))) == 0.0
  t = jnp.zeros((1, 4, 4, 4)).at[0, 0].set(1.0)
  assert float(losses.bce_loss(half, t)) == pytest.approx(np.log(2), rel=1e-5)
  assert float(losses.bce_loss(t, t)) < 1e-5
  p = jnp.zeros((1, 4, 4, 4)).at[0, :2].set(1.0)    # 32 voxels vs 16 voxels
  assert float(losses.iou(p, t)[0]) == pytest.approx(0.5)
  assert float(losses.iou(t, t)[0]) == 1.0


def test_scatter_and_physics_loss():
  g = Geometry(n_voxels=16, box_nm=80.0, detector_px=32)
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.random((2, 16, 16, 16)), jnp.float32)
  b = jnp.asarray(rng.random((2, 16, 16, 16)), jnp.float32)
  assert float(losses.scatter_loss(a, g, target=a)) < 1e-12
  want = np.mean((np.asarray(simulate_pattern(a, g)) -
                  np.asarray(simulate_pattern(b, g))) ** 2)
  got = losses.scatter_loss(a, g, target_pattern=simulate_pattern(b, g))
  assert float(got) == pytest.approx(want, rel=1e-5)
  assert float(losses.physics_loss(a, g, target=b)) == pytest.approx(
      want + 0.1 * float(losses.binary_loss(a)), rel=1e-5)
  # Channel-last predictions [B, N, N, N, 1] are accepted.
  assert float(losses.scatter_loss(a[..., None], g, target=b)) == pytest.approx(
      want, rel=1e-5)
  with pytest.raises(ValueError, match="needs target or target_pattern"):
    losses.scatter_loss(a, g)


def test_masked_loss_ignores_invalid_pixels():
  g = Geometry(n_voxels=16, box_nm=80.0, detector_px=32)
  rng = np.random.default_rng(2)
  pred = jnp.asarray(rng.random((1, 16, 16, 16)), jnp.float32)
  pattern = jnp.asarray(rng.random((1, 32, 32)), jnp.float32)
  valid = jnp.asarray(rng.random((1, 32, 32)) > 0.5)
  base = losses.masked_pattern_loss(pred, pattern, valid, g)
  changed = jnp.where(valid, pattern, 1.0 - pattern)
  assert float(losses.masked_pattern_loss(pred, changed, valid, g)) == float(base)
  sim = simulate_pattern(pred, g)
  want = np.sum(np.asarray(valid) * (np.asarray(sim) - np.asarray(pattern))**2
                ) / np.sum(np.asarray(valid))
  assert float(base) == pytest.approx(want, rel=1e-5)
  # No gradient flows from invalid pixels.
  grad = jax.grad(lambda p: losses.masked_pattern_loss(pred, p, valid, g))(
      pattern)
  assert np.all(np.asarray(grad)[~np.asarray(valid)] == 0)


def test_the_loss_constant_keeps_its_meaning_on_every_grid():
  # E is a voxel sum, so a particle's peak |E|^2 grows as dr^-6; the loss's
  # eps follows it (the paper's 100 on its own grid), keeping the dark level
  # the same fraction of the peak on a coarser grid.
  from msftnet import intensity, solids
  from msftnet.raster import rasterize
  assert Geometry().loss_eps == 100.0
  # (Without absorption, whose slice-wise discretisation differs between
  # the grids: peak |E|^2 = (sum rho)^2 exactly.)
  coarse = Geometry(n_voxels=32, detector_px=64, absorption_length_nm=np.inf)
  fine = Geometry(absorption_length_nm=np.inf)
  assert coarse.loss_eps == pytest.approx(100.0 / 64)
  p = solids.SolidParams("Cube", size=0.5, theta=0.3, phi=0.2, alpha=0.5)
  ratios = [g.loss_eps / float(jnp.max(intensity(
      rasterize(*solids.half_spaces(p), g.n_voxels), g))) for g in (coarse, fine)]
  assert ratios[0] == pytest.approx(ratios[1], rel=0.05)
