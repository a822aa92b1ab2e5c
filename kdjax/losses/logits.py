"""Losses on logits: cross-entropies, the temperature KL, logit standardization,
DKD, DIST, TTM and WTTM, and NKD."""
import jax
import jax.numpy as jnp
import optax


def as_float(x):
  """x in float32, or float64 where it already is (for exact checks)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def kl_rows(log_student, target):
  """sum_c target (log target - log_student) per row, 0 log 0 = 0 (torch's kl_div)."""
  return jnp.sum(jax.scipy.special.xlogy(target, target) - target * log_student, -1)


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
  log_student = jax.nn.log_softmax(as_float(student_logits) / temperature)
  log_teacher = jax.nn.log_softmax(as_float(jax.lax.stop_gradient(teacher_logits)) / temperature)
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
  return dkd_per_example(student_logits, teacher_logits, target_mask, alpha, beta,
                         temperature).mean()


def dkd_per_example(student_logits, teacher_logits, target_mask, alpha, beta, temperature):
  """dkd's loss of each row, [rows]."""
  mask = target_mask.astype(bool)
  student = as_float(student_logits) / temperature
  teacher = as_float(jax.lax.stop_gradient(teacher_logits)) / temperature

  def binary_log_split(logits):  # log (p(target classes), p(the rest))
    log_p = jax.nn.log_softmax(logits)
    return jnp.stack([jax.nn.logsumexp(jnp.where(mask, log_p, -jnp.inf), -1),
                      jax.nn.logsumexp(jnp.where(mask, -jnp.inf, log_p), -1)], -1)

  tckd = optax.losses.kl_divergence_with_log_targets(binary_log_split(student),
                                                     binary_log_split(teacher))
  # The reference masks the target classes with -1000 before the softmax.
  nckd = optax.losses.kl_divergence_with_log_targets(
      jax.nn.log_softmax(student - 1000.0 * mask), jax.nn.log_softmax(teacher - 1000.0 * mask))
  return temperature**2 * (alpha * tckd + beta * nckd)


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




def _power_transformed(teacher_logits, exponent):
  """(the teacher's softmax raised to `exponent` and renormalised, the power
  sum before renormalising): TTM's transformed teacher, without gradient."""
  power = jax.nn.softmax(as_float(jax.lax.stop_gradient(teacher_logits))) ** exponent
  norm = power.sum(-1)
  return power / norm[:, None], norm


def ttm(student_logits: jax.Array, teacher_logits: jax.Array, exponent: float) -> jax.Array:
  """Transformed Teacher Matching (Zheng & Yang, ICLR 2024): the KL from the
  teacher's softmax raised to `exponent` and renormalised to the student's
  plain softmax (no temperature, no T^2), batch mean."""
  target, _ = _power_transformed(teacher_logits, exponent)
  return kl_rows(jax.nn.log_softmax(as_float(student_logits)), target).mean()


def wttm(student_logits: jax.Array, teacher_logits: jax.Array, exponent: float) -> jax.Array:
  """Weighted TTM: TTM's per-example KL weighted by the teacher's power sum
  (sum_c p^exponent, unnormalised, without gradient), batch mean."""
  target, norm = _power_transformed(teacher_logits, exponent)
  return (norm * kl_rows(jax.nn.log_softmax(as_float(student_logits)), target)).mean()


def nkd(student_logits: jax.Array, teacher_logits: jax.Array, labels: jax.Array,
        temperature: float, gamma: float) -> jax.Array:
  """Normalized KD (Yang et al., ICCV 2023; yzd-v/cls_KD nkd.py as fixed in
  October 2023): -p_t[y] log p_s[y] at T = 1, plus gamma T^2 times the
  cross-entropy of the softmaxes at T over the classes other than the label
  (removed from both logit vectors); batch means."""
  student = as_float(student_logits)
  teacher = as_float(jax.lax.stop_gradient(teacher_logits))
  own = jax.nn.one_hot(labels, student.shape[-1], dtype=bool)
  pick = lambda x: jnp.sum(jnp.where(own, x, 0.0), -1)
  target_part = -(pick(jax.nn.softmax(teacher)) * pick(jax.nn.log_softmax(student))).mean()
  # A label logit of -1e30 has probability exactly 0: the class is removed.
  drop = lambda x: jnp.where(own, -1e30, x / temperature)
  cross = jnp.sum(jnp.where(own, 0.0, jax.nn.softmax(drop(teacher))
                            * jax.nn.log_softmax(drop(student))), -1)
  return target_part - gamma * temperature**2 * cross.mean()
