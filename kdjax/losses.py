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
