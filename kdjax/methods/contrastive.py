"""Contrastive terms: CRD's embeddings and its memory of every training example."""
import math
from typing import Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from kdjax import losses
from kdjax.methods.terms import Context, Term
from kdjax.models import layers


def _embed(features, dim, name):
  """CRD's Embed: a linear map (PyTorch's init) to `dim`, L2-normalized."""
  x = nn.Dense(dim, kernel_init=layers.torch_default_init,
               bias_init=layers.torch_bias_init(features.shape[-1]), name=name)(
                   features.astype(jnp.float32))
  return x / jnp.sqrt(jnp.sum(x**2, -1, keepdims=True))


class ContrastMemory(nn.Module):
  """CRD's learned embeddings and memory (mdistiller's CRD.py Embed and
  ContrastMemory): each training example's last student and teacher
  embeddings (uniform in +-1/sqrt(dim / 3) at first), the NCE normalizers Z
  (set from the first batch), each example's scores exp(m . v / T) against the
  other side's memory rows of itself and its negatives, and the momentum
  update of its memory rows, over every device's examples. Returns the scores
  (student's, teacher's), each [batch, 1 + negatives], divided by Z."""
  num_examples: int
  dim: int
  temperature: float
  momentum: float
  axis_name: Optional[str]

  @nn.compact
  def __call__(self, student_feature, teacher_feature, indices, contrast_indices):
    v1 = _embed(student_feature, self.dim, 'embed_student')
    v2 = _embed(jax.lax.stop_gradient(teacher_feature), self.dim, 'embed_teacher')
    bound = 1.0 / math.sqrt(self.dim / 3)

    def memory():
      key = self.make_rng('params')
      return jax.random.uniform(key, (self.num_examples, self.dim), jnp.float32, -bound,
                                bound)
    memory_v1 = self.variable('batch_stats', 'memory_student', memory)
    memory_v2 = self.variable('batch_stats', 'memory_teacher', memory)
    normalizers = self.variable('batch_stats', 'normalizers', lambda: -jnp.ones(2))
    weight_v1 = memory_v1.value[contrast_indices]  # [batch, 1 + negatives, dim]
    weight_v2 = memory_v2.value[contrast_indices]
    out_v2 = jnp.exp(jnp.einsum('bkd,bd->bk', weight_v1, v2) / self.temperature)
    out_v1 = jnp.exp(jnp.einsum('bkd,bd->bk', weight_v2, v1) / self.temperature)
    # Z: the first batch's mean score times the example count, then fixed.
    first = jax.lax.stop_gradient(
        jnp.stack([jnp.mean(out_v1), jnp.mean(out_v2)]) * self.num_examples)
    if self.axis_name:
      first = lax.pmean(first, self.axis_name)
    z = jnp.where(normalizers.value < 0, first, normalizers.value)
    if not self.is_initializing():
      normalizers.value = z
      everyone = lambda x: x if not self.axis_name else lax.all_gather(
          x, self.axis_name, axis=0, tiled=True)
      rows = everyone(indices)
      for variable, v in ((memory_v1, v1), (memory_v2, v2)):
        updated = (variable.value[rows] * self.momentum
                   + everyone(jax.lax.stop_gradient(v)) * (1 - self.momentum))
        updated /= jnp.sqrt(jnp.sum(updated**2, -1, keepdims=True))
        variable.value = variable.value.at[rows].set(updated)
    return out_v1 / z[0], out_v2 / z[1]


def negatives(key, indices, train_labels, count):
  """mdistiller's contrast indices ('exact' mode): for each example its own
  index, then `count` indices drawn uniformly, with replacement, from the
  training examples of the other classes; one key per example."""
  train_labels = jnp.asarray(train_labels)
  order = jnp.argsort(train_labels, stable=True)  # examples grouped by class
  labels = train_labels[indices]
  # method='sort': the default binary search is a loop, which XLA:GPU runs by
  # syncing with the host each trip.
  grouped = train_labels[order]
  starts = jnp.searchsorted(grouped, labels, side='left', method='sort')
  sizes = jnp.searchsorted(grouped, labels, side='right', method='sort') - starts

  def draw(key, start, size):
    position = jax.random.randint(key, (count,), 0, len(train_labels) - size)
    return order[jnp.where(position < start, position, position + size)]
  drawn = jax.vmap(draw)(jax.vmap(lambda i: jax.random.fold_in(key, i))(indices), starts,
                         sizes)
  return jnp.concatenate([indices[:, None], drawn], 1)


def _crd_part(config, ctx: Context):
  return ContrastMemory(len(ctx.examples.train_labels), config.crd_dim, config.crd_temperature,
                        config.crd_momentum, ctx.axis_name)


def contrastive(ctx: Context):
  examples = ctx.examples
  contrast = negatives(examples.key, examples.indices, examples.train_labels,
                       ctx.config.crd_negatives)
  out_s, out_t = ctx.part(ctx.student['feature'], ctx.teacher['feature'], examples.indices,
                          contrast)
  num_examples = len(examples.train_labels)
  return ctx.config.crd_weight * (losses.contrast_nce(out_s, num_examples)
                                  + losses.contrast_nce(out_t, num_examples))


TERMS = (
    # Tian et al. (ICLR 2020), contrastive representation distillation
    Term('crd', contrastive, teacher=True, part=_crd_part, reads_examples=True),
)
