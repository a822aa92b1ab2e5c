"""Losses on features and relations: hints, RKD, AT, NST, SP, PKT, VID,
ReviewKD, OFD, CRD and SRD."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from kdjax.losses.logits import as_float


@jax.jit
def feature_l2(features: jax.Array, target_features: jax.Array) -> jax.Array:
  """Squared L2 distance from each feature to its (gradient-free) target, batch mean."""
  diff = features.astype(jnp.float32) - jax.lax.stop_gradient(target_features).astype(
      jnp.float32)
  return jnp.sum(diff**2, axis=-1).mean()


@jax.jit
def mean_squared_error(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over every element of the squared difference to the (gradient-free)
  targets, as torch.nn.MSELoss in FitNets' hint loss."""
  return optax.squared_error(predictions.astype(jnp.float32),
                             jax.lax.stop_gradient(targets).astype(jnp.float32)).mean()


def _safe_norm(x, axis=-1):
  # max(||x||, 1e-12) as torch's F.normalize clamps it, with a zero (not NaN)
  # gradient at x = 0, which the i == j differences of the angle loss are.
  return jnp.sqrt(jnp.maximum(jnp.sum(x**2, axis=axis), 1e-24))


def _normalized_distances(embeddings):
  """Pairwise Euclidean distances over their mean off the diagonal (RKD's mu)."""
  squared = jnp.sum(embeddings**2, -1)
  gram = embeddings @ embeddings.T
  distances = jnp.sqrt(jnp.maximum(squared[:, None] + squared[None, :] - 2 * gram, 1e-12))
  distances = jnp.where(jnp.eye(len(embeddings), dtype=bool), 0.0, distances)
  positive = distances > 0
  return distances / (jnp.sum(jnp.where(positive, distances, 0.0)) / jnp.sum(positive))


@jax.jit
def rkd_distance(features: jax.Array, target_features: jax.Array) -> jax.Array:
  """Relational KD's distance loss (Park et al., 2019): Huber (delta 1) between
  the batch's normalized pairwise distances in the student's and the teacher's
  feature spaces, mean over all pairs. The feature sizes may differ."""
  student = _normalized_distances(features.astype(jnp.float32))
  teacher = _normalized_distances(jax.lax.stop_gradient(target_features).astype(jnp.float32))
  return optax.huber_loss(student, teacher, delta=1.0).mean()


def _angles(embeddings):
  """cos of the angle at i between j and k, for every triple (i, j, k)."""
  differences = embeddings[None, :, :] - embeddings[:, None, :]  # [i, j] = e_j - e_i
  unit = differences / _safe_norm(differences)[..., None]
  return jnp.einsum('ijd,ikd->ijk', unit, unit)


@jax.jit
def rkd_angle(features: jax.Array, target_features: jax.Array) -> jax.Array:
  """Relational KD's angle loss: Huber (delta 1) between the cosines of the
  angles every triple of examples forms, student against teacher, mean over triples."""
  student = _angles(features.astype(jnp.float32))
  teacher = _angles(jax.lax.stop_gradient(target_features).astype(jnp.float32))
  return optax.huber_loss(student, teacher, delta=1.0).mean()



def _l2_normalize(x):
  """Each row over max(its L2 norm, 1e-12), as torch's F.normalize."""
  return x / _safe_norm(x)[..., None]


def attention_transfer(features: jax.Array, target_features: jax.Array,
                       p: float = 2.0) -> jax.Array:
  """AT (Zagoruyko & Komodakis, 2017) on one pair of NHWC maps of one grid:
  the squared difference of the L2-normalized spatial maps mean_c(f^p), mean
  over the batch and positions."""
  def attention(f):
    f = f.astype(jnp.float32)
    return _l2_normalize(jnp.mean(f**p, -1).reshape(len(f), -1))
  return jnp.mean((attention(features) - attention(jax.lax.stop_gradient(target_features)))**2)


def neuron_selectivity(features: jax.Array, target_features: jax.Array) -> jax.Array:
  """NST (Huang & Wang, 2017) on one pair of NHWC maps of one grid: squared
  MMD with the polynomial kernel (x.y)^2 between the channels' L2-normalized
  spatial maps, mean over the batch and channel pairs."""
  def channels(f):  # [batch, channels, positions], each channel unit-norm
    f = f.astype(jnp.float32)
    return _l2_normalize(f.reshape(len(f), -1, f.shape[-1]).transpose(0, 2, 1))

  def kernel(a, b):
    return jnp.mean(jnp.einsum('ncp,ndp->ncd', a, b)**2)
  student, teacher = channels(features), channels(jax.lax.stop_gradient(target_features))
  return kernel(teacher, teacher) + kernel(student, student) - 2 * kernel(student, teacher)


def similarity_preserving(features: jax.Array, target_features: jax.Array) -> jax.Array:
  """SP (Tung & Mori, 2019): squared difference of the batch's row-normalized
  Gram matrices of the flattened features, summed over pairs over batch^2
  (pass the whole batch)."""
  def gram(f):
    f = f.astype(jnp.float32).reshape(len(f), -1)
    return _l2_normalize(f @ f.T)
  diff = gram(jax.lax.stop_gradient(target_features)) - gram(features)
  return jnp.sum(diff**2) / len(features)**2


def probabilistic_transfer(features: jax.Array, target_features: jax.Array,
                           eps: float = 1e-7) -> jax.Array:
  """PKT (Passalis & Tefas, 2018): KL between the batch's conditional
  probability distributions built from cosine similarities rescaled to
  [0, 1], student against teacher, mean over pairs (pass the whole batch)."""
  def conditional(f):
    f = f.astype(jnp.float32)
    f = f / (jnp.sqrt(jnp.sum(f**2, -1, keepdims=True)) + eps)
    similarity = (f @ f.T + 1.0) / 2.0
    return similarity / jnp.sum(similarity, -1, keepdims=True)
  student, teacher = conditional(features), conditional(jax.lax.stop_gradient(target_features))
  return jnp.mean(teacher * jnp.log((teacher + eps) / (student + eps)))


def variational_information(mean: jax.Array, variance: jax.Array,
                            target_features: jax.Array) -> jax.Array:
  """VID (Ahn et al., 2019): the negative log-likelihood of the teacher's
  features under a Gaussian of the regressed `mean` and per-channel
  `variance` (constants dropped), mean over every element."""
  target = jax.lax.stop_gradient(target_features).astype(jnp.float32)
  return jnp.mean(0.5 * ((mean - target)**2 / variance + jnp.log(variance)))


def _pool_matrix(length: int, size: int) -> np.ndarray:
  """[size, length]: row i averages adaptive_avg_pool2d's window i, from
  floor(i * length / size) to ceil((i + 1) * length / size); windows overlap
  where size does not divide length (ImageNet's 7x7 and 14x14 maps to 4x4)."""
  matrix = np.zeros((size, length))
  for i in range(size):
    start, end = (i * length) // size, -(-(i + 1) * length // size)
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def _average_pool(x, size):
  """NHWC maps averaged down to size x size, as adaptive_avg_pool2d."""
  _, h, w, _ = x.shape
  pool = lambda length: _pool_matrix(length, size).astype(x.dtype)
  return jnp.einsum('ih,nhwc,jw->nijc', pool(h), x, pool(w),
                    precision=jax.lax.Precision.HIGHEST)


def hierarchical_context(features, target_features) -> jax.Array:
  """ReviewKD's hierarchical context loss (Chen et al., 2021): for each level,
  the MSE of the maps and of their 4x4, 2x2 and 1x1 average pools (those
  smaller than the map), weighted 1, 1/2, 1/4, 1/8 and normalized by the
  weights' sum; summed over the levels."""
  total = 0.0
  for student, target in zip(features, target_features):
    student = student.astype(jnp.float32)
    target = jax.lax.stop_gradient(target).astype(jnp.float32)
    loss, weight, weights = jnp.mean((student - target)**2), 1.0, 1.0
    for size in (4, 2, 1):
      if size < student.shape[1]:
        weight /= 2
        loss += weight * jnp.mean((_average_pool(student, size) - _average_pool(target, size))**2)
        weights += weight
    total += loss / weights
  return total


def partial_l2(features: jax.Array, target_features: jax.Array, margin: jax.Array) -> jax.Array:
  """OFD's partial L2 (Heo et al., 2019) between the student's connected
  pre-ReLU features and the teacher's: no loss where the teacher is at most
  `margin` (per channel) and the student below it, or where both are negative
  with the student below the teacher; mean over the batch, sum over the rest."""
  source = features.astype(jnp.float32)
  target = jax.lax.stop_gradient(target_features).astype(jnp.float32)
  loss = ((source - margin)**2 * ((source > margin) & (target <= margin))
          + (source - target)**2 * ((source > target) & (target > margin) & (target <= 0))
          + (source - target)**2 * (target > 0))
  return jnp.abs(loss).mean(0).sum()


def overhaul_margin(mean: jax.Array, std: jax.Array) -> jax.Array:
  """OFD's margin per channel: the expectation of a pre-ReLU response
  N(mean, std^2) given that it is negative (-3 std where that is below
  probability 0.001)."""
  mean = jax.lax.stop_gradient(mean).astype(jnp.float32)
  std = jax.lax.stop_gradient(std).astype(jnp.float32)
  negative = jax.scipy.stats.norm.cdf(-mean / std)
  truncated = (-std * jnp.exp(-(mean / std)**2 / 2) / jnp.sqrt(2 * jnp.pi)
               / jnp.maximum(negative, 0.001) + mean)
  return jnp.where(negative > 0.001, truncated, -3 * std)


def contrast_nce(scores: jax.Array, num_examples: int, eps: float = 1e-7) -> jax.Array:
  """CRD's NCE loss (Tian et al., 2020): `scores` [batch, 1 + negatives] hold
  each example's normalized score of its positive, then of its negatives,
  against a uniform noise distribution over `num_examples`; summed over the
  pairs, mean over the batch."""
  noise = (scores.shape[1] - 1) / num_examples
  positive = jnp.log(scores[:, 0] / (scores[:, 0] + noise + eps))
  negative = jnp.log(noise / (scores[:, 1:] + noise + eps))
  return -(positive.sum() + negative.sum()) / len(scores)


def srd(connected_student_feature: jax.Array, teacher_feature: jax.Array,
        teacher_kernel: jax.Array, teacher_bias: jax.Array,
        teacher_logits: jax.Array):
  """SRD (Yang et al., ICLR 2021, knowledge distillation via softmax
  regression representation learning; jingyang2017/KD_SRRL): (the MSE between
  the student's connected pooled feature and the teacher's, the MSE between
  the teacher's classifier applied to the student's feature and the teacher's
  logits), each a mean over every element."""
  student = as_float(connected_student_feature)
  stop = lambda x: as_float(jax.lax.stop_gradient(x))
  logits = student @ stop(teacher_kernel) + stop(teacher_bias)
  return (jnp.mean((student - stop(teacher_feature))**2),
          jnp.mean((logits - stop(teacher_logits))**2))
