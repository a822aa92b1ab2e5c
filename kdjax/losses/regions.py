"""SDD (Wei et al., CVPR 2024, Scale Decoupled Distillation;
shicaiwei123/SDD-CVPR2024): KD or DKD on the logits of regions of the last
map at several scales, the regions where the teacher's local and global
predictions disagree about the label weighted twice."""
from typing import Sequence

import jax
import jax.numpy as jnp

from kdjax.losses.features import _average_pool
from kdjax.losses.logits import as_float, dkd_per_example, kl_rows


def _regions(position_logits, scales):
  """[regions x batch, classes]: the [B, H, W, C] position logits pooled as the
  reference's SPP (an adaptive average pool to 4 x 4, then to each scale),
  scale by scale, each region's rows together (the global region first for
  scales starting at 1)."""
  four = _average_pool(as_float(position_logits), 4)
  pooled = [_average_pool(four, s).reshape(len(four), s * s, -1) for s in scales]
  regions = jnp.concatenate(pooled, 1)  # [B, R, C]
  return jnp.swapaxes(regions, 0, 1).reshape(-1, regions.shape[-1])


def _weights(teacher_regions, labels, batch):
  """1 where a region's teacher prediction and the global one (the first
  region) are both right or both wrong about the label, 2 where one is."""
  right = jnp.argmax(teacher_regions, -1) == jnp.tile(labels, len(teacher_regions) // batch)
  return jnp.where(right == jnp.tile(right[:batch], len(right) // batch), 1.0, 2.0)


def sdd(student_position_logits: jax.Array, teacher_position_logits: jax.Array,
        labels: jax.Array, temperature: float, scales: Sequence[int]) -> jax.Array:
  """SDD-KD: T^2 KL per region, weighted, summed and divided by B x regions."""
  batch = len(labels)
  student = _regions(student_position_logits, scales)
  teacher = _regions(jax.lax.stop_gradient(teacher_position_logits), scales)
  target = jax.nn.softmax(teacher / temperature)
  kl = temperature**2 * kl_rows(jax.nn.log_softmax(student / temperature), target)
  return jnp.sum(_weights(teacher, labels, batch) * kl) / len(kl)


def sdd_dkd(student_position_logits: jax.Array, teacher_position_logits: jax.Array,
            labels: jax.Array, alpha: float, beta: float, temperature: float,
            scales: Sequence[int]) -> jax.Array:
  """SDD-DKD: DKD per region (the label the target class), weighted, summed
  and divided by B x regions."""
  batch = len(labels)
  student = _regions(student_position_logits, scales)
  teacher = _regions(jax.lax.stop_gradient(teacher_position_logits), scales)
  region_labels = jnp.tile(labels, len(student) // batch)
  per_region = dkd_per_example(student, teacher, jax.nn.one_hot(region_labels, student.shape[-1]),
                               alpha, beta, temperature)
  return jnp.sum(_weights(teacher, labels, batch) * per_region) / len(per_region)
