"""The shape network: symmetry groups, the symmetry-aware orientation error
and loss, the targets, exact resumption, the bundled model's interface."""

import itertools
import json

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import small_geometry
from msftnet import raster
from msftnet import shape_net
from msftnet import solids
from msftnet.refine import trust

# Orders of the proper rotation groups that leave a far-field pattern
# unchanged (inversion included; module docstring of msftnet.shape_net).
ORDERS = {"Tetrahedron": 24, "Truncated Tetrahedron": 24, "Cube": 24,
          "Snub Cube": 24, "Icosahedron": 60, "Truncated Icosahedron": 60,
          "Decahedron": 20, "Truncated Twinned Tetrahedron": 12, "Sphere": 1,
          "Potato": 1}


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_pattern_symmetry_is_the_right_group(name):
  g = shape_net.pattern_symmetry(name)
  assert len(g) == ORDERS[name]
  np.testing.assert_allclose(np.linalg.det(g), 1.0, atol=1e-9)
  # A group: closed under products.
  for a, b in itertools.product(g[:6], g):
    assert np.abs(g - a @ b).max(axis=(1, 2)).min() < 1e-6
  if name in shape_net.NO_ORIENTATION:
    return
  v = solids.base_polyhedron(name)
  for r in g:          # maps the vertices onto themselves or their inverses
    w = v @ r.T
    d_same = np.linalg.norm(w[:, None] - v[None], axis=-1).min(1).max()
    d_inv = np.linalg.norm(w[:, None] + v[None], axis=-1).min(1).max()
    assert min(d_same, d_inv) < 1e-6


def test_the_chiral_snub_cube_keeps_its_handedness():
  v = solids.base_polyhedron("Snub Cube")
  # Its mirror image is no rotation of it: no element maps V onto -V.
  for r in shape_net.pattern_symmetry("Snub Cube"):
    w = v @ r.T
    assert np.linalg.norm(w[:, None] + v[None], axis=-1).min(1).max() > 1e-3


def test_orientation_error_ignores_what_the_pattern_cannot_see():
  rng = np.random.default_rng(1)
  r = Rotation.random(random_state=rng).as_matrix()
  for name in ("Cube", "Icosahedron", "Decahedron", "Tetrahedron"):
    for g in shape_net.pattern_symmetry(name):
      assert shape_net.orientation_error_deg(r @ g, r, name) < 1e-4
    tilt = Rotation.from_rotvec([0, 0, np.radians(7.0)]).as_matrix()
    assert shape_net.orientation_error_deg(r @ tilt, r, name) == \
        pytest.approx(7.0, abs=1e-4)
    red = shape_net.reduced_rotation(r, name)
    assert shape_net.orientation_error_deg(red, r, name) < 1e-4
    angle = np.degrees(np.arccos((np.trace(red) - 1) / 2))
    others = [np.degrees(np.arccos(np.clip((np.trace(r @ g) - 1) / 2, -1, 1)))
              for g in shape_net.pattern_symmetry(name)]
    assert angle <= min(others) + 1e-6
  # Without symmetry every other orientation is an error.
  other = Rotation.random(random_state=rng).as_matrix()
  assert shape_net.orientation_error_deg(other, r, "Potato") > 1.0


def test_the_loss_is_zero_on_any_equivalent_orientation():
  rng = np.random.default_rng(2)
  label = solids.CLASSES.index("Octahedron")
  r = Rotation.random(random_state=rng).as_matrix()
  g = shape_net.pattern_symmetry("Octahedron")[7]
  target = r @ g
  rot6 = jnp.asarray(np.concatenate([target[:, 0], target[:, 1]])[None],
                     jnp.float32)
  logits = jnp.zeros((1, len(solids.CLASSES))).at[0, label].set(30.0)
  out = {"logits": logits, "log_radius": jnp.zeros(1),
         "log_stretch": jnp.zeros(1), "rot6": rot6}
  batch = {"label": jnp.asarray([label]), "log_radius": jnp.zeros(1),
           "log_stretch": jnp.zeros(1),
           "rotation": jnp.asarray(r[None], jnp.float32),
           "has_orientation": jnp.ones(1)}
  _, terms = shape_net._loss(out, batch, shape_net._WEIGHTS)
  assert float(terms["orientation"]) < 1e-5
  assert float(terms["class"]) < 1e-5 and float(terms["top1"]) == 1.0
  tilted = Rotation.from_rotvec([0.3, 0, 0]).as_matrix() @ target
  out["rot6"] = jnp.asarray(np.concatenate([tilted[:, 0], tilted[:, 1]])[None],
                            jnp.float32)
  assert float(shape_net._loss(out, batch, shape_net._WEIGHTS)[1]
               ["orientation"]) > 1e-3


def test_simulated_targets_match_the_solids():
  g = small_geometry(32, 32)
  sim = shape_net.simulate(7, np.arange(6), g)
  assert list(sim["truncated"]) == [False, True] * 3
  assert list(sim["filtered"]) == [False, False, True, True, False, False]
  for p, lab, lr, rot in zip(sim["params"], sim["label"], sim["log_radius"],
                             sim["rotation"]):
    assert solids.CLASSES[lab] == p.polyhedron
    np.testing.assert_allclose(rot, p.rotation_matrix(), atol=1e-6)
    dens = np.asarray(raster.rasterize(*solids.half_spaces(p), 32))
    assert np.exp(lr) == pytest.approx(trust.equivalent_radius(dens), rel=1e-4)
  assert not sim["valid"][2].all() and sim["valid"][0].all()
  assert (sim["pattern"][~sim["valid"]] == 0).all()


def test_training_resumes_exactly(tmp_path):
  g = small_geometry(16, 32)
  kw = dict(width=2, batch_size=4, cache_size=8, validation_size=4,
            eval_every=100, log_every=1, checkpoint_every=2)
  straight = shape_net.train(shape_net.TrainConfig(steps=4, **kw),
                             str(tmp_path / "a"), g)
  shape_net.train(shape_net.TrainConfig(steps=2, **kw), str(tmp_path / "b"), g)
  resumed = shape_net.train(shape_net.TrainConfig(steps=4, **kw),
                            str(tmp_path / "b"), g)
  for x, y in zip(*(map(np.asarray, __import__("jax").tree_util.tree_leaves(t))
                    for t in (straight, resumed))):
    np.testing.assert_array_equal(x, y)
  rows = [json.loads(l) for l in open(tmp_path / "b" / "metrics.jsonl")]
  assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4]
  assert [r["step"] for r in rows if r["split"] == "validation"] == [2, 4]
  with pytest.raises(ValueError, match="another config"):
    shape_net.train(shape_net.TrainConfig(steps=4, **{**kw, "width": 3}),
                    str(tmp_path / "b"), g)
  # A workdir loads as a model; a bad folder is one sentence.
  model = shape_net.load(tmp_path / "b")
  est = shape_net.predict(np.zeros((2, 32, 32)), np.ones((2, 32, 32)), model)
  assert len(est) == 2 and len(est[0].classes) == len(solids.CLASSES)
  assert est[0].classes[0][1] >= est[0].classes[1][1]
  with pytest.raises(ValueError, match="not a shape model"):
    shape_net.load(tmp_path)


def test_measured_rows_and_a_fine_tune(tmp_path):
  """``measured`` rows go through the measured_image filter; a training run
  with ``measured_fraction`` draws such rows, with 0 it draws none (the
  original mixture), and ``init_model`` starts from a model's weights."""
  g = small_geometry(16, 128)
  sim = shape_net.simulate(7, np.arange(4), g, filtered=False,
                           measured=[False, True, False, True])
  assert list(sim["measured"]) == [False, True, False, True]
  assert sim["valid"][0].all() and sim["valid"][1].mean() < 0.5
  assert (sim["pattern"][~sim["valid"]] == 0).all()
  kw = dict(width=2, batch_size=8, cache_size=8, validation_size=3,
            eval_every=100, log_every=1, checkpoint_every=1)
  cache = {k: sim[k] for k in ("pattern", "label", "log_radius",
                               "log_stretch", "rotation", "has_orientation")}
  for frac in (0.0, 1.0):
    batch = shape_net._batch(cache, shape_net.TrainConfig(
        measured_fraction=frac, **kw), 0)
    pat = np.asarray(batch["pattern"]).reshape(8, -1) * 255
    eight_bit = np.abs(pat - np.round(pat)).max(axis=1) < 1e-3
    assert eight_bit.all() if frac == 1.0 else not eight_bit.any()
  with pytest.raises(ValueError, match="measured_fraction"):
    shape_net.TrainConfig(measured_fraction=1.5)
  shape_net.train(shape_net.TrainConfig(steps=1, **kw), str(tmp_path / "a"),
                  small_geometry(16, 32))
  start = shape_net.load(tmp_path / "a")
  _, _, state = shape_net._init(shape_net.TrainConfig(
      init_model=str(tmp_path / "a"), **kw), small_geometry(16, 32))
  for x, y in zip(*(map(np.asarray, __import__("jax").tree_util.tree_leaves(t))
                    for t in (start.params, state[0]))):
    np.testing.assert_array_equal(x, y)
  with pytest.raises(ValueError, match="width-2"):
    shape_net._init(shape_net.TrainConfig(
        init_model=str(tmp_path / "a"), **{**kw, "width": 3}),
        small_geometry(16, 32))


def test_the_bundled_model_reads_a_pattern():
  model = shape_net.load()
  m = model.geometry.detector_px
  with pytest.raises(ValueError, match="must be"):
    shape_net.predict(np.zeros((2, 10, 10)), np.ones((2, 10, 10)), model)
  sim = shape_net.simulate(3, np.arange(2), model.geometry)
  est = shape_net.predict(sim["pattern"], sim["valid"], model)
  rec = est[0].to_json()
  assert [c["class"] for c in rec["shape_classes"]][0] == est[0].classes[0][0]
  assert all(c["class"] in solids.CLASSES for c in rec["shape_classes"])
  assert sum(p for _, p in est[0].classes) == pytest.approx(1.0, abs=1e-4)
  assert 0 < rec["radius_nm"] < model.geometry.box_nm and rec["stretch"] > 0
  json.dumps(rec, allow_nan=False)
  assert sim["pattern"].shape[1:] == (m, m)


def test_match_basis_names_a_rotated_body_and_says_what_it_expected():
  """A cube and an octahedron, each in one of the orientations compared,
  are matched exactly by their own class and less well by every other
  (the volume matched too); an empty volume matches nothing; a volume of
  the wrong shape gets one sentence."""
  from msftnet.raster import rasterize
  angles = [(0.7, -1.1, 2.0), (2.1, 0.4, -0.3), (1.2, 2.5, 1.0)]
  for name in ("Cube", "Octahedron"):
    p = solids.SolidParams(name, size=0.6, theta=2.1, phi=0.4, alpha=-0.3)
    body = np.asarray(rasterize(*solids.half_spaces(p), 32))
    ranked = shape_net.match_basis(body, rotations=angles)
    assert ranked[0][0] == name and ranked[0][1] > 0.97, ranked[:3]
    assert ranked[1][1] < ranked[0][1] - 0.05
    assert set(c for c, _ in ranked) == set(shape_net.MATCH_CLASSES)
  empty = shape_net.match_basis(np.zeros((32, 32, 32)), rotations=2)
  assert all(v == 0.0 for _, v in empty)
  with pytest.raises(ValueError, match="multiple of 32"):
    shape_net.match_basis(np.zeros((40, 40, 40)))
  for bad in (0, [], [(1.0, 2.0)]):
    with pytest.raises(ValueError, match="rotations"):
      shape_net.match_basis(np.ones((32, 32, 32)), rotations=bad)
  cube = np.zeros((32, 32, 32), np.float32)
  cube[8:24, 8:24, 8:24] = 1.0
  assert len(shape_net.match_basis(cube, rotations=np.int64(2))) == len(
      shape_net.MATCH_CLASSES)


def test_the_fitted_answer_is_read_through_its_noise_free_pattern():
  """:func:`shape_net.predict_fit` reads each density's simulated pattern
  at its own dark level (``eps = max(I) 10^u``), every pixel valid: the
  same as :func:`shape_net.predict` of that pattern made independently
  (``msft.simulate_pattern``), per density of a batch; bad shapes get one
  sentence."""
  from msftnet.msft import intensity
  from msftnet.msft import simulate_pattern
  model = shape_net.load()
  g = model.geometry
  p = solids.SolidParams("Cube", size=0.45, theta=0.6, phi=1.1, alpha=0.4)
  cube = np.asarray(raster.rasterize(*solids.half_spaces(p), g.n_voxels))
  ball = np.asarray(raster.sphere_density(g.n_voxels, 0.2))
  dens, u = np.stack([cube, ball]), np.asarray([-3.0, -4.5])
  got = shape_net.predict_fit(dens, u, g, model)
  for d, ui, est in zip(dens, u, got):
    peak = float(np.max(intensity(jnp.asarray(d), g)))
    pattern = np.asarray(simulate_pattern(jnp.asarray(d), g,
                                               eps=peak * 10.0 ** ui))
    ref = shape_net.predict(pattern[None], np.ones((1,) + pattern.shape,
                                                    bool), model)[0]
    assert [c for c, _ in est.classes] == [c for c, _ in ref.classes]
    np.testing.assert_allclose([q for _, q in est.classes],
                               [q for _, q in ref.classes], atol=1e-4)
    assert est.radius_nm == pytest.approx(ref.radius_nm, rel=1e-3)
  one = shape_net.predict_fit(cube, -3.0, g, model)
  assert len(one) == 1 and one[0].classes[0][0] == got[0].classes[0][0]
  with pytest.raises(ValueError, match=r"^shape_net.predict_fit: densities "
                     r"must be \[B, 64, 64, 64\], got shape \(32, 32, 32\)"):
    shape_net.predict_fit(np.zeros((32, 32, 32)), -3.0, g, model)
  with pytest.raises(ValueError, match=r"^shape_net.predict_fit: "
                     r"dark_levels must be one value or one per density "
                     r"\(2\), got shape \(3,\)\.$"):
    shape_net.predict_fit(dens, [-3.0, -3.0, -3.0], g, model)
  with pytest.raises(ValueError, match="reads 128 px patterns"):
    shape_net.predict_fit(np.zeros((1, 16, 16, 16)), -3.0,
                          small_geometry(16, 32), model)
