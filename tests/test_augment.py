"""Tests of the detector-artefact filters (msftnet.augment)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from msftnet import augment

M = 64


@pytest.fixture(scope="module")
def pattern():
  """A smooth radial test pattern in [0, 1] with a bright centre."""
  r, c = np.meshgrid(np.arange(M) - M // 2, np.arange(M) - M // 2,
                     indexing="ij")
  rad = np.hypot(r, c)
  x = 0.5 + 0.5 * np.cos(rad / 3.0) * np.exp(-rad / 40)
  x = (x - x.min()) / np.ptp(x)
  return jnp.asarray(x, jnp.float32)


KEYS = [jax.random.key(i) for i in range(12)]


@pytest.mark.parametrize("name", tuple(augment.FILTERS))
def test_contract_of_every_filter(name, pattern):
  f = jax.jit(augment.FILTERS[name])
  for key in KEYS[:4]:
    out, valid = f(key, pattern)
    assert out.shape == pattern.shape and out.dtype == pattern.dtype
    assert valid.shape == pattern.shape and valid.dtype == jnp.bool_
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # Same key, same output (jit and eager alike).
    again, valid_again = augment.FILTERS[name](key, pattern)
    np.testing.assert_allclose(again, out, atol=1e-6)
    np.testing.assert_array_equal(valid_again, valid)
  # vmap over keys and patterns equals a loop.
  batch = jnp.stack([pattern, pattern[::-1]])
  keys = jnp.stack(KEYS[:2])
  vout, vvalid = jax.vmap(augment.FILTERS[name])(keys, batch)
  for i in range(2):
    o, v = augment.FILTERS[name](KEYS[i], batch[i])
    np.testing.assert_allclose(vout[i], o, atol=1e-6)
    np.testing.assert_array_equal(vvalid[i], v)


@pytest.mark.parametrize("name", ["uniform_noise", "poisson_noise", "shot_noise"])
def test_noise_keeps_every_pixel_valid_and_changes_values(name, pattern):
  outs = [augment.FILTERS[name](k, pattern) for k in KEYS[:4]]
  for out, valid in outs:
    assert bool(valid.all())
  assert not np.allclose(outs[0][0], outs[1][0])


def test_shot_noise_is_poisson():
  """Counts of a flat pattern: variance equals mean (Fano factor ~1)."""
  flat = jnp.full((256, 256), 0.5, jnp.float32)
  flat = flat.at[0, 0].set(1.0)
  for key in KEYS[:3]:
    out, _ = augment.FILTERS["shot_noise"](key, flat)
    # Recover the photon scale from the quantisation step of the output.
    levels = np.unique(np.asarray(out))
    step = np.min(np.diff(levels))
    counts = np.rint(np.asarray(out)[1:, 1:] / step).ravel()
    fano = counts.var() / counts.mean()
    assert 0.9 < fano < 1.1
    assert 5 / 2 * 0.8 < counts.mean() < 100 / 2 * 1.2


def test_poisson_noise_statistics():
  zero = jnp.zeros((256, 256), jnp.float32).at[0, 0].set(1.0)
  out, _ = augment.FILTERS["poisson_noise"](KEYS[5], zero)
  vals = np.asarray(out).ravel()[1:]
  levels = np.unique(np.round(vals / vals[vals > 0].min(), 3))
  # Poisson(1) counts: a few integer levels with P(0) ~ e^-1.
  assert np.allclose(levels[:4], [0, 1, 2, 3])
  assert 0.33 < np.mean(vals == 0) < 0.41


def test_shift_range_and_mask(pattern):
  seen = set()
  for i in range(60):
    out, valid = augment.FILTERS["shift"](jax.random.key(i), pattern)
    out, valid = np.asarray(out), np.asarray(valid)
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    dy = rows[0] if rows[0] > 0 else -(M - 1 - rows[-1])
    dx = cols[0] if cols[0] > 0 else -(M - 1 - cols[-1])
    assert abs(dy) <= 5 and abs(dx) <= 5
    seen.update([dy, dx])
    # Shifted content equals the source; the strip shifted in is invalid.
    np.testing.assert_array_equal(out, np.where(
        valid, np.roll(np.asarray(pattern), (dy, dx), axis=(0, 1)), 0.0))
    assert valid.sum() == (M - abs(dy)) * (M - abs(dx))
  assert min(seen) == -5 and max(seen) == 5


def test_simulated_experiment_offset_is_where_q0_goes():
  """A bright pixel at ``M // 2`` lands at ``M // 2 + offset`` wherever the
  filter's beam stop, crop and blind spot leave it visible."""
  delta = np.zeros((M, M), np.float32)
  delta[M // 2, M // 2] = 1.0
  seen = 0
  for i in range(30):
    key = jax.random.key(i)
    out = np.asarray(augment.apply_filter("simulated_experiment", key,
                                          delta)[0])
    if out.max() <= 0:
      continue                        # masked, cropped or attenuated away
    seen += 1
    got = np.unravel_index(np.argmax(out), out.shape)
    np.testing.assert_array_equal(
        np.asarray(got) - M // 2, augment.simulated_experiment_offset(key))
  assert seen >= 5


def test_central_hole_radius(pattern):
  radii = []
  for key in KEYS:
    out, valid = augment.FILTERS["central_hole"](key, pattern)
    out, valid = np.asarray(out), np.asarray(valid)
    r, c = np.meshgrid(np.arange(M) - M // 2, np.arange(M) - M // 2,
                       indexing="ij")
    rad = np.hypot(r, c)
    hole = ~valid
    assert np.all(out[hole] == 0)
    if hole.any():
      radii.append(rad[hole].max())
      # The hole is a centred disc: every pixel closer than its edge is in it.
      assert np.all(hole[rad < rad[hole].max()])
    np.testing.assert_array_equal(out[valid], np.asarray(pattern)[valid])
  assert radii and max(radii) < 10


def test_salt_pepper_amount_and_mask(pattern):
  for key in KEYS[:6]:
    out, valid = augment.FILTERS["salt_pepper"](key, pattern)
    out, valid = np.asarray(out), np.asarray(valid)
    assert np.mean(~valid) <= 0.05 + 0.02
    assert set(np.unique(out[~valid])) <= {0.0, 1.0}
    np.testing.assert_array_equal(out[valid], np.asarray(pattern)[valid])


def test_crop_geometry(pattern):
  for key in KEYS:
    out, valid = augment.FILTERS["crop"](key, pattern)
    valid = np.asarray(valid)
    r, c = np.meshgrid(np.arange(M) - M // 2, np.arange(M) - M // 2,
                       indexing="ij")
    rad = np.hypot(r, c)
    # The valid region is the intersection of a centred disc of radius in
    # [M/4, M/2) and a rectangle cut by at most M/4 per side.
    assert M / 4 - 1 <= rad[valid].max() < M / 2
    rect = _rect(valid)
    np.testing.assert_array_equal(valid, rect & (rad <= rad[valid].max()))
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    assert rows[0] <= M / 4 and rows[-1] >= M - 1 - M / 4
    assert cols[0] <= M / 4 and cols[-1] >= M - 1 - M / 4
    assert np.all(np.asarray(out)[~valid] == 0)


def _rect(valid):
  rows = np.flatnonzero(valid.any(axis=1))
  cols = np.flatnonzero(valid.any(axis=0))
  rect = np.zeros_like(valid)
  rect[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
  return rect


def test_saturation_cap_and_mask(pattern):
  for key in KEYS[:6]:
    out, valid = augment.FILTERS["saturation"](key, pattern)
    out, valid = np.asarray(out), np.asarray(valid)
    assert out.max() <= 1.0
    # The gain is one number in [1, 1.5]; the invalid pixels are exactly the
    # clipped ones.
    ok = np.asarray(pattern) > 0.05
    gain = np.median(out[valid & ok] / np.asarray(pattern)[valid & ok])
    assert 1.0 <= gain <= 1.5
    np.testing.assert_array_equal(~valid, gain * np.asarray(pattern) > 1.0 + 1e-6)
    assert np.all(out[~valid] == 1.0)


def test_blind_spot_core(pattern):
  for key in KEYS[:6]:
    out, valid = augment.FILTERS["blind_spot"](key, pattern)
    out, valid = np.asarray(out), np.asarray(valid)
    p = np.asarray(pattern)
    attenuation = np.where(p > 1e-3, 1 - out / np.where(p > 1e-3, p, 1), 0)
    assert np.all(out <= p + 1e-6)
    # Invalid exactly where more than half of the signal was removed.
    sel = p > 1e-3
    np.testing.assert_array_equal(~valid[sel], attenuation[sel] > 0.5 + 1e-5)


def test_simulated_experiment_combines_artefacts(pattern):
  fractions = []
  for key in KEYS:
    out, valid = augment.FILTERS["simulated_experiment"](key, pattern)
    fractions.append(float(np.mean(valid)))
    assert np.all(np.asarray(out)[~np.asarray(valid)] <= 1.0)
  # The crop alone removes at least the corners: never everything valid.
  assert max(fractions) < 0.85 and min(fractions) > 0.05


def test_random_filter_choice_is_uniform_and_deterministic(pattern):
  f = jax.jit(augment.random_filter)
  a = f(KEYS[0], pattern)
  b = f(KEYS[0], pattern)
  np.testing.assert_array_equal(a[0], b[0])
  # The choice: index drawn exactly as random_filter draws it.
  keys = jax.random.split(jax.random.key(7), 2000)
  idx = jax.vmap(lambda k: jax.random.randint(jax.random.split(k)[0], (), 0,
                                              10))(keys)
  counts = np.bincount(np.asarray(idx), minlength=10)
  assert counts.min() > 150 and counts.max() < 250
  # And it applies that filter with the second half of the key.
  by_name = jax.jit(augment.apply_filter, static_argnums=0)
  for k in keys[:2]:
    kc, kf = jax.random.split(k)
    name = augment.FILTER_NAMES[int(jax.random.randint(kc, (), 0, 10))]
    want = by_name(name, kf, pattern)
    got = f(k, pattern)
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)
    np.testing.assert_array_equal(got[1], want[1])


def test_batched_forms(pattern):
  batch = jnp.stack([pattern] * 3)
  out, valid = jax.jit(augment.random_filter_batch)(KEYS[1], batch)
  assert out.shape == (3, M, M) and valid.shape == (3, M, M)
  out, valid = jax.jit(augment.apply_filter_batch, static_argnums=0)(
      "crop", KEYS[1], batch)
  assert not np.array_equal(valid[0], valid[1])       # independent per sample
  with pytest.raises(ValueError, match="unknown filter 'blur'"):
    augment.apply_filter("blur", KEYS[0], pattern)
  with pytest.raises(ValueError, match=r"must be \[M, M\]"):
    augment.FILTERS["shift"](KEYS[0], batch)


@pytest.mark.launcher
def test_show_augmentations_launcher(tmp_path):
  import pathlib
  import subprocess
  import sys
  root = pathlib.Path(__file__).parent.parent
  out = tmp_path / "fig.png"
  res = subprocess.run([sys.executable, "-m", "experiments.show_augmentations",
                        f"--out={out}"], cwd=root, capture_output=True,
                       text=True, timeout=300)
  assert res.returncode == 0, res.stderr
  from PIL import Image
  assert Image.open(out).size[0] > 1000
  res = subprocess.run([sys.executable, "-m", "experiments.show_augmentations",
                        f"--out={out}", f"--pattern={tmp_path / 'no.png'}"],
                       cwd=root, capture_output=True, text=True, timeout=300)
  assert res.returncode == 1 and "no such file" in res.stderr


def test_evaluation_input_is_keyed_by_the_sample_index():
  x = np.random.default_rng(5).random((32, 32)).astype(np.float32)
  p, v = augment.evaluation_input(x, 7, "clean")
  assert np.array_equal(p, x) and v.all()
  a = augment.evaluation_input(x, 7, "simulated_experiment")
  b = augment.evaluation_input(x, 7, "simulated_experiment")
  c = augment.evaluation_input(x, 8, "simulated_experiment")
  assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])
  with pytest.raises(ValueError, match="condition"):
    augment.evaluation_input(x, 7, "noisy")


def test_measured_image_is_like_the_experimental_images():
  """A rectangular detector window about the centre (half-height <= 34,
  half-width <= 40 px, centre within 2 px), 8-bit levels, zero pixels
  invalid, as in barke*.png (about a quarter of the image valid); not one of
  the paper's ten filters that random_filter draws from."""
  assert "measured_image" not in augment.FILTER_NAMES
  assert len(augment.FILTER_NAMES) == 10
  m = 128
  r, c = np.meshgrid(np.arange(m) - m // 2, np.arange(m) - m // 2,
                     indexing="ij")
  rad = np.hypot(r, c)
  bright = jnp.asarray(0.6 + 0.4 * np.exp(-rad / 30), jnp.float32)
  fractions = []
  for key in KEYS[:6]:
    out, valid = augment.apply_filter("measured_image", key, bright)
    out, valid = np.asarray(out), np.asarray(valid)
    np.testing.assert_array_equal(valid, out > 0)
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-3)
    assert (np.abs(r[valid]) <= 36).all() and (np.abs(c[valid]) <= 42).all()
    fractions.append(valid.mean())
  assert 0.12 < min(fractions) and max(fractions) < 0.45
  assert len(set(np.round(fractions, 4))) > 1       # the window varies
  # Dark valleys (below an 8-bit level) are invalid, as zero pixels are in
  # the experimental images.
  dark = bright.at[60:68, :].set(0.0)
  _, valid = augment.apply_filter("measured_image", KEYS[0], dark)
  assert not np.asarray(valid)[62:66, 50:78].any()
