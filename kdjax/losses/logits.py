"""Losses on logits: cross-entropies, the temperature KL, logit standardization,
DKD and DIST."""
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



def standardize(logits: jax.Array, eps: float = 1e-7) -> jax.Array:
  """Logit standardization (Sun et al., 2024): each row minus its mean over
  (eps + its standard deviation), the unbiased one as torch's Tensor.std."""
  logits = logits.astype(jnp.float32)
  mean = jnp.mean(logits, -1, keepdims=True)
  return (logits - mean) / (eps + jnp.std(logits, -1, keepdims=True, ddof=1))


@jax.jit
def dkd(student_logits: jax.Array, teacher_logits: jax.Array, target_mask: jax.Array,
        alpha: float, beta: float, temperature: float) -> jax.Array:
  """Decoupled KD (Zhao et al., 2022): alpha * TCKD + beta * NCKD, each T^2 KL,
  batch mean. TCKD compares the binary split (target classes, the rest);
  NCKD the distributions over the non-target classes. `target_mask` marks
  each example's target classes (mdistiller's gt_mask: the label's one)."""
  mask = target_mask.astype(bool)
  student = student_logits.astype(jnp.float32) / temperature
  teacher = jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) / temperature

  def binary_log_split(logits):  # log (p(target classes), p(the rest))
    log_p = jax.nn.log_softmax(logits)
    return jnp.stack([jax.nn.logsumexp(jnp.where(mask, log_p, -jnp.inf), -1),
                      jax.nn.logsumexp(jnp.where(mask, -jnp.inf, log_p), -1)], -1)

  tckd = optax.losses.kl_divergence_with_log_targets(binary_log_split(student),
                                                     binary_log_split(teacher))
  # The reference masks the target classes with -1000 before the softmax.
  nckd = optax.losses.kl_divergence_with_log_targets(
      jax.nn.log_softmax(student - 1000.0 * mask), jax.nn.log_softmax(teacher - 1000.0 * mask))
  return temperature**2 * (alpha * tckd + beta * nckd).mean()


def _pearson_rows(a, b, eps=1e-8):
  """Pearson correlation of each row of a with the same row of b (DIST's eps)."""
  a = a - a.mean(-1, keepdims=True)
  b = b - b.mean(-1, keepdims=True)
  return jnp.sum(a * b, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1) + eps)


def dist_inter(student_logits: jax.Array, teacher_logits: jax.Array,
               temperature: float) -> jax.Array:
  """DIST's inter-class relation (Huang et al., 2022): T^2 (1 - mean over
  examples of the Pearson correlation of the softened predictions)."""
  student = jax.nn.softmax(student_logits.astype(jnp.float32) / temperature)
  teacher = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32)
                           / temperature)
  return temperature**2 * (1 - _pearson_rows(student, teacher).mean())


def dist_intra(student_logits: jax.Array, teacher_logits: jax.Array,
               temperature: float) -> jax.Array:
  """DIST's intra-class relation: as dist_inter over each class's column of
  predictions across the batch (pass the whole batch)."""
  student = jax.nn.softmax(student_logits.astype(jnp.float32) / temperature)
  teacher = jax.nn.softmax(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32)
                           / temperature)
  return temperature**2 * (1 - _pearson_rows(student.T, teacher.T).mean())


