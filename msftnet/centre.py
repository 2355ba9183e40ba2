"""The pattern's centre: where q = 0 falls on the detector.

The MSFT puts ``q = 0`` at pixel ``(M // 2, M // 2)``. A measured pattern's
centre can be off by a few pixels (beam position, detector placement; the
paper's simulated-experiment filter shifts patterns by up to 5 px, twice).
Unmodelled, such a shift is read as shape. :func:`find_centre` estimates the
integer offset, minimised over ``|c - M // 2| <= max_shift`` per axis,
inside the valid pixels, from two scores of each candidate centre ``c``
(:func:`centre_scores`): the pattern's approximate point symmetry about it
(Friedel's law ``I(q) = I(-q)`` holds in the small-angle limit; absorption
and the Ewald curvature break it weakly at small q: the normalised mean
squared difference between ``t(c + d)`` and ``t(c - d)`` over pixel pairs
within ``radius``) and how little the pattern varies along rings about it
(:func:`ring_centre`). :func:`shift_pattern` then moves the pattern so that
its centre lands on ``M // 2`` (pixels moved in from outside the detector
become invalid).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["find_centre", "find_centres", "search_centres", "CentreSearch",
           "centre_scores", "ring_centre",
           "centre_candidates", "distinct", "shift_pattern",
           "SYMMETRY_RADIUS", "RING_RADIUS", "CANDIDATE_SEPARATION"]


@functools.lru_cache(maxsize=8)
def _candidates(m: int, max_shift: int, radius: int):
  """Flat pixel indices of the pairs of every candidate centre:
  ``(a, b, ok)``, each ``[S, K]`` for ``S = (2 max_shift + 1)^2`` candidates
  (row-major in ``(dy, dx)``) and the ``K`` offsets of a half disc of
  ``radius``; ``ok`` marks pairs on the detector (the others index 0)."""
  yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
  half = ((yy * yy + xx * xx <= radius * radius)
          & ((yy > 0) | ((yy == 0) & (xx > 0))))
  dy, dx = yy[half], xx[half]
  s = np.arange(-max_shift, max_shift + 1)
  cy = (m // 2 + np.repeat(s, s.size))[:, None]
  cx = (m // 2 + np.tile(s, s.size))[:, None]
  idx = [cy + dy, cx + dx, cy - dy, cx - dx]
  ok = (np.minimum.reduce(idx) >= 0) & (np.maximum.reduce(idx) < m)
  a = np.where(ok, idx[0] * m + idx[1], 0).astype(np.int32)
  b = np.where(ok, idx[2] * m + idx[3], 0).astype(np.int32)
  return a, b, ok


@functools.partial(jax.jit, static_argnames=("max_shift", "radius",
                                             "min_pairs"))
def _scores(t, v, *, max_shift, radius, min_pairs):
  """Symmetry score ``[B, S]`` of every candidate (inf: too few pairs)."""
  ia, ib, ok = _candidates(t.shape[-1], max_shift, radius)

  def one(args):
    ti, vi = args
    ti, vi = (ti * vi).reshape(-1), vi.reshape(-1)
    w = vi[ia] * vi[ib] * ok                                   # [S, K]
    nw = jnp.sum(w, axis=1)
    a, b = ti[ia], ti[ib]
    safe = jnp.maximum(nw, 1.0)
    mean = jnp.sum(w * (a + b), axis=1) / (2 * safe)
    spread = jnp.sum(w * ((a - mean[:, None]) ** 2 + (b - mean[:, None]) ** 2),
                     axis=1) / (2 * safe)
    score = (jnp.sum(w * (a - b) ** 2, axis=1) / safe
             / jnp.maximum(spread, 1e-12))
    return jnp.where(nw >= min_pairs, score, jnp.inf)

  return jax.lax.map(one, (t, v))


#: Pair radius (px) of the symmetry score of :func:`find_centre` (and
#: :func:`find_centres`).
SYMMETRY_RADIUS = 20

#: Radius (px) of the disc whose rings :func:`ring_centre` compares.
RING_RADIUS = 20


@functools.lru_cache(maxsize=8)
def _disc(m: int, max_shift: int, radius: int):
  """Flat pixel indices of the disc of ``radius`` about every candidate
  centre, ``idx [S, K]`` (0 off the detector), ``ok [S, K]``, and each
  offset's ring (its distance, floored) ``ring [K]``."""
  yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
  inside = yy * yy + xx * xx < radius * radius
  dy, dx = yy[inside], xx[inside]
  ring = np.floor(np.hypot(dy, dx)).astype(np.int32)
  s = np.arange(-max_shift, max_shift + 1)
  cy = (m // 2 + np.repeat(s, s.size))[:, None] + dy
  cx = (m // 2 + np.tile(s, s.size))[:, None] + dx
  ok = (cy >= 0) & (cy < m) & (cx >= 0) & (cx < m)
  idx = np.where(ok, cy * m + cx, 0).astype(np.int32)
  return idx, ok, ring


@functools.partial(jax.jit, static_argnames=("max_shift", "radius",
                                             "min_pixels"))
def _ring_scores(t, v, *, max_shift, radius, min_pixels):
  """Ring score ``[B, S]`` of every candidate (inf: too few pixels): the
  variance within 1 px rings of the valid pixels within ``radius``, as a
  fraction of theirs."""
  idx, ok, ring = _disc(t.shape[-1], max_shift, radius)
  onehot = jnp.asarray(ring[:, None] == np.arange(radius)[None, :],
                       jnp.float32)                              # [K, R]

  def one(args):
    ti, vi = args
    w = vi.reshape(-1)[idx] * ok                                 # [S, K]
    x = ti.reshape(-1)[idx] * w
    n = jnp.sum(w, axis=1)
    safe = jnp.maximum(n, 1.0)
    var = jnp.sum(x * x, axis=1) / safe - (jnp.sum(x, axis=1) / safe) ** 2
    cnt = w @ onehot
    s1 = x @ onehot
    s2 = (x * x) @ onehot
    within = jnp.sum(s2 - s1 ** 2 / jnp.maximum(cnt, 1.0), axis=1) / safe
    good = (n >= min_pixels) & (var > 1e-12)
    return jnp.where(good, within / jnp.where(good, var, 1.0), jnp.inf)

  return jax.lax.map(one, (t, v))


def _as_batch(patterns, valid, name: str, single: bool = False):
  """``(t [B, M, M] float32, v [B, M, M] float32)`` of patterns (one
  ``[M, M]`` with ``single``) and an optional mask broadcastable to them;
  ValueError in one sentence naming ``name`` otherwise."""
  t = np.asarray(patterns, np.float32)
  want = "a pattern [M, M]" if single else "patterns [B, M, M]"
  if single:
    t = t[None]
  if t.ndim != 3 or t.shape[1] != t.shape[2]:
    raise ValueError(f"{name}: expected {want}, got shape "
                     f"{np.shape(patterns)}.")
  if valid is None:
    return t, np.ones(t.shape, np.float32)
  v = np.asarray(valid, bool)
  if single:
    v = v[None]
  try:
    v = np.broadcast_to(v, t.shape)
  except ValueError:
    raise ValueError(f"{name}: the valid mask of shape {np.shape(valid)} "
                     f"does not fit {want} of shape {np.shape(patterns)}."
                     ) from None
  return t, v.astype(np.float32)


def _log_over_min(score):
  """``log(score / min score)`` per row (inf stays inf; a row with no
  finite score is all inf)."""
  best = np.min(np.where(np.isfinite(score), score, np.inf), axis=1,
                keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(np.isfinite(score) & np.isfinite(best),
                    np.log(np.maximum(score, 1e-30)
                           / np.maximum(best, 1e-30)), np.inf)


def _parts(t, v, *, max_shift: int, radius: int, min_pairs: int):
  """The two raw scores of every candidate of ``t, v [B, M, M]``:
  ``(symmetry [B, S], ring [B, S])`` (inf: too few pixels), the symmetry's
  pairs within twice ``radius`` for a pattern with no candidate scored
  within ``radius`` (a large beam stop)."""
  sym = np.array(_scores(t, v, max_shift=int(max_shift),
                         radius=int(radius), min_pairs=int(min_pairs)))
  none = ~np.isfinite(sym).any(axis=1)
  if none.any():
    sym[none] = np.asarray(_scores(t[none], v[none],
                                   max_shift=int(max_shift),
                                   radius=2 * int(radius),
                                   min_pairs=int(min_pairs)))
  ring = np.asarray(_ring_scores(t, v, max_shift=int(max_shift),
                                 radius=RING_RADIUS,
                                 min_pixels=int(min_pairs)))
  return sym, ring


def _combine(sym, ring, rings: bool):
  """The centre search's score from :func:`_parts`: the symmetry's, or
  with ``rings`` the sum of both log ratios to their best (the symmetry's
  alone where no candidate could be scored by both)."""
  if not rings:
    return sym
  both = _log_over_min(sym) + _log_over_min(ring)
  has_both = np.isfinite(both).any(axis=1, keepdims=True)
  return np.where(has_both, both, _log_over_min(sym))


def centre_scores(patterns, valid=None, *, max_shift: int = 10,
                  radius: int = SYMMETRY_RADIUS, min_pairs: int = 200,
                  rings: bool = True) -> np.ndarray:
  """The centre search's score of every candidate offset of patterns
  ``[B, M, M]`` (or one ``[M, M]``): ``[B, 2 max_shift + 1, 2 max_shift
  + 1]`` (or without ``B``; row-major in ``(dy, dx)``; lower is better, inf
  where a candidate has too few valid pixels): the symmetry score (the
  normalised mean squared difference of the pixel pairs within ``radius``
  about the candidate) and, with ``rings``, the ring score of
  :func:`ring_centre` (the variance within 1 px rings of the valid pixels
  within :data:`RING_RADIUS`, as a fraction of theirs), each as the log of
  its ratio to the pattern's best candidate, summed.

  Where no candidate has ``min_pairs`` valid pairs within ``radius`` (a
  large beam stop), the symmetry is scored over pairs within twice it;
  where none has that many valid pixels within :data:`RING_RADIUS` (or
  no candidate can be scored by both), the symmetry score alone is
  returned (as its log ratio with ``rings``).

  The two fail on different patterns: anisotropic fringes bias the rings,
  and an artefact that breaks the point symmetry (a blind spot's
  attenuated rim, an off-centre beam stop), or strong noise, the pairs; the
  sum is right more often than either (docs/results.md, "The centre from
  symmetry and rings").
  """
  single = np.ndim(patterns) == 2
  t, v = _as_batch(patterns, valid, "centre_scores", single)
  side = 2 * max_shift + 1
  out = _combine(*_parts(t, v, max_shift=max_shift, radius=radius,
                         min_pairs=min_pairs), rings).reshape(-1, side, side)
  return out[0] if single else out


@dataclasses.dataclass(frozen=True)
class CentreSearch:
  """What :func:`search_centres` found for each of ``B`` patterns.

  Attributes:
    shift: ``[B, 2]`` int64, the search's offset (:func:`find_centres`);
      ``(0, 0)`` where ``searched`` is False.
    searched: ``[B]`` bool, whether any candidate had enough valid pixels
      to be scored (False: almost nothing valid near the centre, so the
      pattern is read about pixel ``M // 2`` unsearched; a caller should
      say so).
    ring: ``[B, 2]`` int64, the rings' best offset alone
      (:func:`ring_centre`); ``(0, 0)`` where ``ring_found`` is False.
    ring_found: ``[B]`` bool, whether any candidate had enough valid
      pixels for the rings.
    symmetry: ``[B, 2]`` int64, the point symmetry's best offset alone (the
      search without rings, ``min_gain`` 0); ``(0, 0)`` where ``searched``
      is False.
  """
  shift: np.ndarray
  searched: np.ndarray
  ring: np.ndarray
  ring_found: np.ndarray
  symmetry: np.ndarray


def _offsets(k, side: int, max_shift: int, found) -> np.ndarray:
  """Flat candidate indices ``k [B]`` as offsets ``[B, 2]`` (0 where not
  ``found``)."""
  out = np.stack([k // side - max_shift, k % side - max_shift], axis=1)
  return np.where(np.asarray(found)[:, None], out, 0).astype(np.int64)


def search_centres(patterns, valid=None, *, max_shift: int = 10,
                   radius: int = SYMMETRY_RADIUS, min_pairs: int = 200,
                   min_gain: float = 0.0, rings: bool = True
                   ) -> CentreSearch:
  """The centre search of patterns ``[B, M, M]`` (:func:`find_centre`'s
  arguments), with the best offsets of its two scores alone and whether
  each pattern could be searched at all, from one scoring
  (:class:`CentreSearch`)."""
  t, v = _as_batch(patterns, valid, "search_centres")
  return _search(t, v, max_shift=max_shift, radius=radius,
                 min_pairs=min_pairs, min_gain=min_gain, rings=rings)


def _search(t, v, *, max_shift: int, radius: int, min_pairs: int,
            min_gain: float, rings: bool) -> CentreSearch:
  """:func:`search_centres` of checked ``t, v [B, M, M]`` (float32)."""
  sym, ring = _parts(t, v, max_shift=max_shift, radius=radius,
                     min_pairs=min_pairs)
  score = _combine(sym, ring, rings)
  side = 2 * max_shift + 1
  k = np.argmin(score, axis=1)
  # Stay at M // 2 unless the best candidate is clearly better.
  k0 = max_shift * side + max_shift
  rows = np.arange(len(k))
  with np.errstate(divide="ignore"):
    margin = np.log(1.0 - min_gain) if min_gain < 1 else -np.inf
  if rings:
    stay = (np.isfinite(score[:, k0])
            & (score[rows, k] > score[:, k0] + margin))
  else:
    stay = (np.isfinite(score[:, k0])
            & (score[rows, k] > (1.0 - min_gain) * score[:, k0]))
  k = np.where(stay, k0, k)
  searched = np.isfinite(score).any(axis=1)
  ring_found = np.isfinite(ring).any(axis=1)
  sym_found = np.isfinite(sym).any(axis=1)
  return CentreSearch(
      shift=_offsets(k, side, max_shift, searched), searched=searched,
      ring=_offsets(np.argmin(ring, axis=1), side, max_shift, ring_found),
      ring_found=ring_found,
      symmetry=_offsets(np.argmin(sym, axis=1), side, max_shift, sym_found))


def find_centres(patterns, valid=None, *, max_shift: int = 10,
                 radius: int = SYMMETRY_RADIUS, min_pairs: int = 200,
                 min_gain: float = 0.0, rings: bool = True) -> np.ndarray:
  """:func:`find_centre` of a batch ``[B, M, M]``: offsets ``[B, 2]``
  (int64; all candidates of a pattern scored at once, jit-compiled;
  ``(0, 0)`` for a pattern with no candidate that could be scored, which
  :func:`search_centres` reports)."""
  t, v = _as_batch(patterns, valid, "find_centres")
  return _search(t, v, max_shift=max_shift, radius=radius,
                 min_pairs=min_pairs, min_gain=min_gain, rings=rings).shift


#: How far apart (px, per axis) two centres must lie to count as distinct
#: candidates (:func:`distinct`).
CANDIDATE_SEPARATION = 2


def distinct(c, others) -> bool:
  """Whether the offset ``c`` lies at least :data:`CANDIDATE_SEPARATION` px
  (per axis) from every offset in ``others``."""
  return all(max(abs(c[0] - a), abs(c[1] - b)) >= CANDIDATE_SEPARATION
             for a, b in others)


#: Pair radii (px) whose symmetry minima :func:`centre_candidates` offers,
#: in order after the default search's centre and the rings' centre.
CANDIDATE_RADII = (20, 30, 15)


def ring_centre(pattern, valid=None, *, max_shift: int = 10,
                radius: int = RING_RADIUS, min_pixels: int = 200
                ) -> tuple[int, int]:
  """The integer offset ``(dy, dx)`` about which the pattern varies least
  along rings: for each candidate centre within ``max_shift`` px, the valid
  pixels within ``radius`` px are binned by their distance (1 px rings) and
  the variance within the rings is taken as a fraction of theirs; the
  smallest wins (candidates with fewer than ``min_pixels`` valid pixels are
  skipped; none: ``(0, 0)``; among equal scores the first in row-major
  ``(dy, dx)`` order).

  A pattern's radially falling envelope centres it even where its point
  symmetry is broken (a blind spot's rim, a beam stop off its centre), and
  single pixels (unlike pairs) need not have a valid partner.
  """
  t, v = _as_batch(pattern, valid, "ring_centre", single=True)
  score = np.asarray(_ring_scores(t, v, max_shift=int(max_shift),
                                  radius=int(radius),
                                  min_pixels=int(min_pixels)))[0]
  dy, dx = _offsets(np.argmin(score)[None], 2 * max_shift + 1, max_shift,
                    [np.isfinite(score).any()])[0]
  return int(dy), int(dx)


def centre_candidates(pattern, valid=None, *, k: int = 4,
                      max_shift: int = 10, min_pairs: int = 200,
                      radius: int = SYMMETRY_RADIUS, rings: bool = True
                      ) -> list[tuple[int, int]]:
  """Up to ``k`` distinct candidate offsets ``(dy, dx)`` of the pattern's
  centre, the most likely first.

  The first is :func:`find_centre`'s, the second :func:`ring_centre`'s
  (where the rings could score any candidate).
  The search is fooled where
  the detector's artefacts break the pattern's point symmetry (a blind
  spot's attenuated rim, an off-centre beam stop, noise): then the right
  centre is often a local minimum of the score over pairs closer to the
  centre. The others are the next-best local minima of the score over the
  pair radii :data:`CANDIDATE_RADII` (the first minimum of each radius,
  then the second, ...), each at least 2 px from every earlier candidate
  (per axis). A caller that can score a centre by a fit (the refinement's
  objective) chooses among them. ``radius`` and ``rings``: the first
  candidate's search (:func:`find_centre`).
  """
  if k < 1:
    raise ValueError(f"centre_candidates: k must be >= 1, got {k}.")
  t, v = _as_batch(pattern, valid, "centre_candidates", single=True)
  side = 2 * max_shift + 1
  # The search's centre and the rings' own, from one scoring.
  search = _search(t, v, max_shift=max_shift, radius=radius,
                   min_pairs=min_pairs, min_gain=0.0, rings=rings)
  picked = [tuple(int(x) for x in search.shift[0])]

  minima = {}

  def minima_of(radius):
    """Up to ``k`` local minima of the score over pairs within ``radius``,
    best first, each more than 1 px from the better ones (computed once)."""
    if radius not in minima:
      score = np.asarray(_scores(t, v, max_shift=int(max_shift),
                                 radius=int(radius),
                                 min_pairs=int(min_pairs)))[0]
      found = []
      for i in np.argsort(score):
        if not np.isfinite(score[i]) or len(found) >= k:
          break
        y, x = divmod(int(i), side)
        if all(max(abs(y - py), abs(x - px)) > 1 for py, px in found):
          found.append((y, x))
      minima[radius] = [(y - max_shift, x - max_shift) for y, x in found]
    return minima[radius]

  if k > 1 and search.ring_found[0]:      # (none where nothing was scored)
    ring = tuple(int(x) for x in search.ring[0])
    if distinct(ring, picked):
      picked.append(ring)
  for rank in range(k):
    for radius in CANDIDATE_RADII:
      if len(picked) >= k:
        return picked[:k]
      m = minima_of(radius)
      if rank < len(m) and distinct(m[rank], picked):
        picked.append(m[rank])
  return picked[:k]


def find_centre(pattern, valid=None, *, max_shift: int = 10,
                radius: int = SYMMETRY_RADIUS, min_pairs: int = 200,
                min_gain: float = 0.0, rings: bool = True) -> tuple[int, int]:
  """Integer offset ``(dy, dx)`` of the pattern's centre from pixel ``M // 2``.

  Args:
    pattern: ``[M, M]`` pattern (normalised log, or any monotone scale).
    valid: optional ``[M, M]`` bool mask.
    max_shift: largest offset searched per axis (px).
    radius: pixel pairs within this distance of the candidate centre.
    min_pairs: candidates with fewer valid pairs (or, for the rings, valid
      pixels) are skipped.
    min_gain: the centre moves from ``M // 2`` only to a candidate whose
      score is clearly better than that of ``M // 2`` (the pattern of a
      particle is not exactly point symmetric: absorption and the Ewald
      sphere break Friedel's law slightly, so a centred pattern's best score
      can lie a pixel or two away): with ``rings``, whose score
      (:func:`centre_scores`) is a sum of log ratios, lower by more than
      ``-log(1 - min_gain)``; without, below ``(1 - min_gain)`` times it.
    rings: also weigh the ring score (:func:`centre_scores`; default);
      False: the symmetry score alone.

  Returns ``(0, 0)`` when no candidate has enough valid pairs; among equal
  scores the first candidate in row-major ``(dy, dx)`` order.
  """
  v = None if valid is None else np.asarray(valid, bool)[None]
  dy, dx = find_centres(np.asarray(pattern)[None], v, max_shift=max_shift,
                        radius=radius, min_pairs=min_pairs,
                        min_gain=min_gain, rings=rings)[0]
  return int(dy), int(dx)


def shift_pattern(pattern, valid, shift) -> tuple[np.ndarray, np.ndarray]:
  """Move the pixel ``M // 2 + shift`` to ``M // 2``: ``(pattern, valid)``.

  ``out[m] = pattern[m + shift]``; pixels whose source lies outside the
  detector are zero and invalid. ``shift = (0, 0)`` returns copies.
  """
  t = np.asarray(pattern)
  v = (np.ones(t.shape, bool) if valid is None else np.asarray(valid, bool))
  m0, m1 = t.shape
  rows = np.arange(m0)[:, None] + int(shift[0])
  cols = np.arange(m1)[None, :] + int(shift[1])
  inside = (rows >= 0) & (rows < m0) & (cols >= 0) & (cols < m1)
  r, c = np.clip(rows, 0, m0 - 1), np.clip(cols, 0, m1 - 1)
  return (np.where(inside, t[r, c], 0).astype(t.dtype), inside & v[r, c])
