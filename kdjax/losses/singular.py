"""KDSVD (Lee et al., ECCV 2018, self-supervised KD using singular value
decomposition; mdistiller/distillers/KDSVD.py): the relations between
consecutive stages' leading singular vectors."""
from typing import Sequence

import jax
import jax.numpy as jnp

from kdjax.losses.logits import as_float


@jax.custom_jvp
def _right_singular(x):
  """(singular values [..., n], right singular vectors [..., n, n] as
  columns) of [..., m, n] matrices, m >= n."""
  _, s, vt = jnp.linalg.svd(x, full_matrices=False)
  return s, jnp.swapaxes(vt, -1, -2)


@_right_singular.defjvp
def _right_singular_jvp(primals, tangents):
  # jax's SVD rule with 1 / (s_j^2 - s_i^2) set to 0 where the two values are
  # equal (as every zero of a rank-deficient map is), which would make it inf.
  x, = primals
  dx, = tangents
  u, s, vt = jnp.linalg.svd(x, full_matrices=False)
  v = jnp.swapaxes(vt, -1, -2)
  ds_matrix = jnp.swapaxes(u, -1, -2) @ dx @ v
  ds = jnp.diagonal(ds_matrix, axis1=-2, axis2=-1)
  gaps = s[..., None, :]**2 - s[..., :, None]**2  # [i, j] = s_j^2 - s_i^2
  tiny = 1e-6 * jnp.max(s, -1, keepdims=True)[..., None]**2
  safe = jnp.abs(gaps) > tiny
  f = jnp.where(safe, 1.0 / jnp.where(safe, gaps, 1.0), 0.0)
  sds = s[..., :, None] * ds_matrix
  dv = v @ (f * (sds + jnp.swapaxes(sds, -1, -2)))
  return (s, v), (ds, dv)


def _leading(stage, n):
  """(normalised leading singular values [B, n], their right singular vectors
  [B, W, n]) of an NHWC stage viewed as the reference's NCHW [B, C*H, W]."""
  b, h, w, c = stage.shape
  matrix = jnp.transpose(as_float(stage), (0, 3, 1, 2)).reshape(b, c * h, w)
  s, v = _right_singular(matrix)
  s, v = s[:, :n], v[:, :, :n]
  return s / jnp.maximum(jnp.linalg.norm(s, axis=-1, keepdims=True), 1e-12), v


def _canonical_signs(v):
  """Each vector's sign set so that its largest-|entry| is positive: the SVD
  backend's arbitrary sign would otherwise change the loss."""
  largest = jnp.take_along_axis(v, jnp.argmax(jnp.abs(v), 1)[:, None], 1)
  return v * jnp.where(largest < 0, -1.0, 1.0)


def kdsvd(student_stages: Sequence[jax.Array], teacher_stages: Sequence[jax.Array],
          k: int = 1) -> jax.Array:
  """KDSVD on paired NHWC stages: each teacher stage's k leading right
  singular vectors, each matched to the student's (of k + 3) of largest
  |cosine| with that cosine's sign, both scaled by the teacher's normalised
  singular values; the squared gap between the student's and the teacher's
  RBF matrices exp(-d^2 / 8) of consecutive stages' vectors, summed, / B."""
  loss, previous = 0.0, None
  for student, teacher in zip(student_stages, teacher_stages):
    s_t, v_t = _leading(jax.lax.stop_gradient(teacher), k)
    v_t = _canonical_signs(v_t)
    _, v_s = _leading(student, k + 3)
    cosine = jnp.swapaxes(v_s, 1, 2) @ v_t  # [B, k + 3, k]
    best = jnp.abs(cosine) == jnp.max(jnp.abs(cosine), 1, keepdims=True)
    v_s = v_s @ jnp.where(best, jnp.sign(cosine), 0.0)
    v_t, v_s = v_t * s_t[:, None], v_s * s_t[:, None]
    if previous is not None:
      rbf = lambda a, b: jnp.exp(-(a[:, :, None] - b[:, None])**2 / 8)
      loss += jnp.sum((rbf(v_s, previous[0]) - rbf(v_t, previous[1]))**2)
    previous = v_s, v_t
  return loss / student_stages[0].shape[0]
