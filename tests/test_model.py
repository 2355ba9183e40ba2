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


def test_tiny_network_forward_and_modes(tiny_model_dir):
  # One jitted forward per mode (eager flax at 64^3 compiles every op on its
  # own and took 100 s); the eval-mode variables come from the shared tiny
  # model directory.
  from msftnet import pretrained
  predictor = pretrained.load_model(tiny_model_dir)
  v = predictor.variables
  net = model.build("tiny", dropout_rate=0.5)
  x = jnp.asarray(np.random.default_rng(0).random((2, 128, 128)), jnp.float32)
  y = predictor(x)                                  # jitted, train=False
  assert y.shape == (2, 64, 64, 64)
  assert float(y.min()) >= 0 and float(y.max()) <= 1
  train = jax.jit(lambda v, x, k: net.apply(
      v, x, train=True, rngs={"dropout": k}, mutable=["batch_stats"])[0])
  a = train(v, x, jax.random.key(1))
  b = train(v, x, jax.random.key(2))
  assert not np.allclose(a, b)                      # dropout is active
  with pytest.raises(ValueError, match=r"\[B, 128, 128, 1\]"):
    net.apply(v, jnp.zeros((2, 64, 64)), train=False)
  with pytest.raises(ValueError, match="unknown width preset"):
    model.build("huge")


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
