"""Tests of the network (msftnet.model)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import Geometry
from msftnet import model


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
