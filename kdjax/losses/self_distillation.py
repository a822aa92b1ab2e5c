"""Losses of self-distillation without intermediate heads: the student's own
past predictions (PS-KD, DLB), its class partners (CS-KD), a virtual teacher
(Tf-KD reg) and a weak head with Zipf-ranked soft labels (USKD). Each computes
what its reference code computes, float32; the side it learns from carries no
gradient."""
import jax
import jax.numpy as jnp

from kdjax.losses import logits as logit_losses


@jax.jit
def ps_kd(logits: jax.Array, targets: jax.Array, previous: jax.Array,
          alpha: jax.Array) -> jax.Array:
  """PS-KD (Kim et al., ICCV 2021; loss/pskd_loss.py): the cross-entropy to
  (1 - alpha) targets + alpha previous, the batch mean of each example's sum
  over classes; `previous` is each example's softmax from the last step that
  trained on it."""
  soft = (1 - alpha) * targets + alpha * jax.lax.stop_gradient(previous)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.sum(soft * log_probs, -1).mean()


def cs_kd(logits: jax.Array, partner_logits: jax.Array, temperature: float) -> jax.Array:
  """CS-KD (Yun et al., CVPR 2020; train.py KDLoss): T^2 sum of
  KL(softmax(partner / T) || softmax(logits / T)) over the batch, divided by
  its size; each example's partner is another of its class."""
  return logit_losses.kl_divergence(logits, partner_logits, temperature)


def dlb(logits: jax.Array, previous_logits: jax.Array, temperature: float) -> jax.Array:
  """DLB (Shen et al., CVPR 2022; dlb.py): T^2 KL(softmax(previous / T) ||
  softmax(logits / T)), batch mean, where `previous_logits` are the logits the
  previous step computed for the same examples."""
  return logit_losses.kl_divergence(logits, previous_logits, temperature)


@jax.jit
def tf_kd_reg(logits: jax.Array, labels: jax.Array, correct_prob: float, temperature: float,
              multiplier: float) -> jax.Array:
  """Tf-KD's regularization term alone (Yuan et al., CVPR 2020;
  my_loss_function.py loss_kd_regularization): multiplier x KLDivLoss(), the
  mean over batch and classes, of log_softmax(logits) against softmax(virtual /
  T), the virtual teacher holding `correct_prob` on the label and the rest
  spread evenly. As the code does, the softmax is taken of those
  probabilities over T, so at T = 20 the target is nearly uniform."""
  num_classes = logits.shape[-1]
  one_hot = jax.nn.one_hot(labels, num_classes)
  virtual = one_hot * correct_prob + (1 - one_hot) * (1 - correct_prob) / (num_classes - 1)
  log_target = jax.nn.log_softmax(virtual / temperature)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  return multiplier * jnp.mean(jnp.exp(log_target) * (log_target - log_probs))


def _zipf_labels(order_scores: jax.Array) -> jax.Array:
  """Each class's Zipf weight 1 / rank, ranks taken by descending score."""
  ranks = jnp.argsort(jnp.argsort(-order_scores, axis=-1), axis=-1)
  return 1.0 / (ranks + 1).astype(jnp.float32)


def uskd(logits: jax.Array, weak_logits: jax.Array, labels_or_targets: jax.Array,
         alpha: float, beta: float, mu: float) -> jax.Array:
  """USKD's term without the student's own cross-entropy (Yang et al., ICCV
  2023; yzd-v/cls_KD mmcls/models/dis_losses/uskd.py): alpha x the target-class
  loss against the squared target probability shifted by its batch mean, beta
  x the cross-entropy of the non-target classes to Zipf labels ranked by the
  weak and the final predictions, and mu x the weak head's label-smoothed
  (0.9 / 0.1) cross-entropy. Integer labels [batch] take the code's label
  branch; target distributions [batch, classes] (mixup) its top-2 branch,
  whose classes are the two largest targets."""
  logits = logits.astype(jnp.float32)
  weak_logits = weak_logits.astype(jnp.float32)
  num_classes = logits.shape[-1]
  if labels_or_targets.ndim == 2:
    value, label = jax.lax.top_k(labels_or_targets, 2)
    smooth = labels_or_targets * 0.9 + 0.1 / num_classes
  else:
    label = labels_or_targets[:, None]
    value = jnp.ones(label.shape, jnp.float32)
    smooth = jax.nn.one_hot(labels_or_targets, num_classes) * 0.9 + 0.1 / num_classes
  take = lambda x: jnp.take_along_axis(x, label, -1)

  log_probs = jax.nn.log_softmax(logits)
  target_probs = take(jax.nn.softmax(logits))**2
  soft = target_probs + value - target_probs.mean(0, keepdims=True)
  soft = jax.lax.stop_gradient(jnp.where(value == 0, 0.0, soft))
  loss_target = -jnp.sum(soft * take(log_probs), 1).mean()

  weak_log_probs = jax.nn.log_softmax(weak_logits)
  loss_weak = -jnp.sum(mu * smooth * weak_log_probs, 1).mean()

  # The code ranks by the weak probabilities and the final LOG-probabilities,
  # each over one minus the sum at the target classes.
  weak_probs = jnp.exp(weak_log_probs)
  rank = (weak_probs / (1 - take(weak_probs).sum(1, keepdims=True) + 1e-6)
          + log_probs / (1 - take(log_probs).sum(1, keepdims=True) + 1e-6))
  non_target = jnp.ones_like(logits, bool)
  non_target = non_target.at[jnp.arange(len(logits))[:, None], label].set(False)
  zipf = jnp.where(non_target, _zipf_labels(jax.lax.stop_gradient(rank)), 0.0)
  zipf = zipf / zipf.sum(1, keepdims=True)
  non_target_log_probs = jax.nn.log_softmax(jnp.where(non_target, logits, -jnp.inf))
  loss_non_target = -jnp.sum(jnp.where(non_target, zipf * non_target_log_probs, 0.0), 1).mean()
  return alpha * loss_target + beta * loss_non_target + loss_weak
