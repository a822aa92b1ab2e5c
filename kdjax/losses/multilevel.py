"""MLKD (Jin et al., CVPR 2023, Multi-Level Logit Distillation): instance,
class and batch alignment of a weak and a strong view's predictions at
several temperatures (Jin-Ying/Multi-Level-Logit-Distillation
mdistiller/distillers/KD_ours.py)."""
from typing import Sequence

import jax
import jax.numpy as jnp

from kdjax.losses.logits import as_float
from kdjax.losses.logits import kl_divergence


def _class_gap(student, teacher, temperature):
  """||Pt^T Pt - Ps^T Ps||^2 / classes (the reference's cc_loss)."""
  ps, pt = jax.nn.softmax(student / temperature), jax.nn.softmax(teacher / temperature)
  return jnp.sum((pt.T @ pt - ps.T @ ps)**2) / student.shape[-1]


def _batch_gap(student, teacher, temperature):
  """||Pt Pt^T - Ps Ps^T||^2 / batch (the reference's bc_loss)."""
  ps, pt = jax.nn.softmax(student / temperature), jax.nn.softmax(teacher / temperature)
  return jnp.sum((pt @ pt.T - ps @ ps.T)**2) / student.shape[0]


def mlkd(student_weak: jax.Array, student_strong: jax.Array, teacher_weak: jax.Array,
         teacher_strong: jax.Array, temperatures: Sequence[float]) -> jax.Array:
  """MLKD's distillation loss at KD weight 1 (its cross-entropies apart), on
  the whole batch (pass the global one: the masks and the gaps are over it).

  The masks come from the teacher's weak view at T = 1 and act as scalars:
  the fraction of examples whose top probability is at most the batch's
  median, and of classes whose summed probability is at most the classes'
  median. Then, over `temperatures` (the reference: the config's, 3, 5, 2,
  6): the weak view's KL times the example fraction; an unmasked KL on the
  strong view for the first three and on the weak view for the last two;
  the weak view's class gap times the class fraction and batch gap times the
  example fraction, with no T^2.
  """
  sw, ss = as_float(student_weak), as_float(student_strong)
  tw, ts = (as_float(jax.lax.stop_gradient(t)) for t in (teacher_weak, teacher_strong))
  probabilities = jax.nn.softmax(tw)
  confidence, class_sums = probabilities.max(-1), probabilities.sum(0)
  # numpy's percentile(., 50) with its linear interpolation, as the reference.
  share = lambda x: jnp.mean((x <= jnp.percentile(x, 50)).astype(x.dtype))
  example_share, class_share = share(confidence), share(class_sums)
  loss = 0.0
  for i, t in enumerate(temperatures):
    loss += example_share * kl_divergence(sw, tw, t)
    loss += kl_divergence(ss, ts, t) if i < 3 else kl_divergence(sw, tw, t)
    loss += class_share * _class_gap(sw, tw, t) + example_share * _batch_gap(sw, tw, t)
  return loss
