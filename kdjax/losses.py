"""Loss functions: arrays in, scalar (batch mean) out. They never see params or configs."""
import jax
import jax.numpy as jnp
import optax


@jax.jit
def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), labels).mean()


@jax.jit
def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy with target distributions (one-hot or mixup-mixed).

  For mixup targets lam * onehot(a) + (1 - lam) * onehot(b) this equals the
  usual lam * CE(a) + (1 - lam) * CE(b).
  """
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()


@jax.jit
def kl_divergence(student_logits: jax.Array, teacher_logits: jax.Array,
                  temperature: float) -> jax.Array:
  """T^2 * KL(softmax(teacher / T) || softmax(student / T)), mean over the batch.

  The T^2 factor keeps the soft term's gradient scale independent of T (Hinton
  et al., 2015). No gradient flows into the teacher side. Both sides are taken in
  log space, so logits of any magnitude give a finite value and gradient.
  """
  log_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  log_teacher = jax.nn.log_softmax(
      jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) / temperature)
  kl = optax.losses.kl_divergence_with_log_targets(log_student, log_teacher)
  return temperature**2 * kl.mean()


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
