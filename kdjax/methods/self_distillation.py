"""Self-distillation without intermediate heads: the student learns from its own
past predictions (PS-KD, DLB), from examples of the same class (CS-KD), from a
virtual teacher (Tf-KD reg) or through a weak head (USKD).

Each term combines with the study's heads (the self term) and with nothing
else; those whose reference trains without mixup refuse it. What a term keeps
between steps (PS-KD's predictions, DLB's last logits) is state in the train
state (batch_stats['method'][term]), checkpointed and resumed with it.
"""
from typing import Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

from kdjax import losses
from kdjax.methods.terms import Context, Term
from kdjax.models import layers


def _everyone(x, axis_name: Optional[str]):
  """`x` of every device, concatenated in device order (the global batch)."""
  return x if not axis_name else lax.all_gather(x, axis_name, axis=0, tiled=True)


class PredictionMemory(nn.Module):
  """PS-KD's memory (lgcnsai/PS-KD-Pytorch main.py all_predictions): each
  training example's softmax from the last step that trained on it. Returns
  the rows of `indices` as they were, and (outside initialization) writes
  every device's new rows."""
  num_examples: int
  num_classes: int
  axis_name: Optional[str]

  @nn.compact
  def __call__(self, indices, probabilities):
    memory = self.variable('batch_stats', 'predictions', jnp.zeros,
                           (self.num_examples, self.num_classes), jnp.float32)
    previous = memory.value[indices]
    if not self.is_initializing():
      memory.value = memory.value.at[_everyone(indices, self.axis_name)].set(
          _everyone(lax.stop_gradient(probabilities), self.axis_name))
    return previous


def _pskd_part(config, ctx: Context):
  return PredictionMemory(len(ctx.examples.train_labels), ctx.targets.shape[-1], ctx.axis_name)


def progressive(ctx: Context):
  """PS-KD: the final classifier's cross-entropy, to targets softened by the
  example's last prediction with alpha_t = alpha_T x epoch / epochs (epochs
  from 1), labels alone in the first epoch. It carries the final classifier's
  cross-entropy, at the weight the other terms give it (methods.ce_weight)."""
  config, logits = ctx.config, ctx.student['logits']
  previous = ctx.part(ctx.examples.indices, jax.nn.softmax(logits))
  if ctx.epoch is None:  # every ramp complete
    alpha = config.ps_kd_alpha
  else:
    alpha = config.ps_kd_alpha * ctx.epoch / config.num_epochs
    previous = jnp.where(ctx.epoch == 1, ctx.targets, previous)
  return ctx.ce_weight * losses.ps_kd(logits, ctx.targets, previous, alpha)


def class_wise(ctx: Context):
  """CS-KD: the anchors learn the softened predictions of their partners,
  which the step forwards as a batch of their own, without gradient."""
  config = ctx.config
  return config.cs_kd_weight * losses.cs_kd(ctx.student['logits'], ctx.second['logits'],
                                            config.cs_kd_temperature)


def virtual_teacher(ctx: Context):
  """Tf-KD reg: alpha x the regularization to the virtual teacher; the final
  cross-entropy gets 1 - alpha (methods.ce_weight)."""
  config = ctx.config
  labels = jnp.argmax(ctx.targets, -1)
  return config.tf_reg_alpha * losses.tf_kd_reg(
      ctx.student['logits'], labels, config.tf_reg_correct_prob, config.tf_reg_temperature,
      config.tf_reg_multiplier)


class LastLogits(nn.Module):
  """DLB's soft targets: the logits the previous step computed for its new
  examples, over the global batch of `batch_size`. Returns this device's rows
  of them (the examples it now carries) and (outside initialization) stores
  the new ones."""
  batch_size: int
  num_classes: int
  axis_name: Optional[str]

  @nn.compact
  def __call__(self, new_logits):
    stored = self.variable('batch_stats', 'logits', jnp.zeros,
                           (self.batch_size, self.num_classes), jnp.float32)
    share = len(new_logits)
    device = lax.axis_index(self.axis_name) if self.axis_name else 0
    previous = lax.dynamic_slice_in_dim(stored.value, device * share, share)
    if not self.is_initializing():
      stored.value = _everyone(lax.stop_gradient(new_logits), self.axis_name)
    return previous


def _dlb_part(config, ctx: Context):
  return LastLogits(config.batch_size, ctx.targets.shape[-1], ctx.axis_name)


def last_batch(ctx: Context):
  """DLB: the carried half (the second group of rows) learns the logits the
  previous step computed for it; the first step of all has none to learn."""
  logits = ctx.student['logits']
  new, carried = jnp.split(logits, 2)
  previous = ctx.part(new)
  weight = ctx.config.dlb_weight
  if ctx.step is not None:
    weight = jnp.where(ctx.step > 0, weight, 0.0)
  return weight * losses.dlb(carried, previous, ctx.config.dlb_temperature)


def _weak_head(config, ctx: Context):
  del config
  classes = ctx.targets.shape[-1]
  channels = ctx.student['stage_features'][-2].shape[-1]
  return nn.Dense(classes, kernel_init=layers.torch_default_init,
                  bias_init=layers.torch_bias_init(channels), name='weak_head')


def unified(ctx: Context):
  """USKD: the weak head reads the pooled output of the second-to-last stage;
  mixed targets take the reference's top-2 branch. Its target-class labels
  subtract a batch mean, taken over the global batch, as on one device."""
  config = ctx.config
  pooled = jnp.mean(ctx.student['stage_features'][-2].astype(jnp.float32), axis=(1, 2))
  targets = ctx.targets if config.mixup_alpha else jnp.argmax(ctx.targets, -1)
  return losses.uskd(ctx.gather(ctx.student['logits']), ctx.gather(ctx.part(pooled)),
                     ctx.gather(targets), config.uskd_alpha, config.uskd_beta, config.uskd_mu)


_ONLY_WITH_HEADS = frozenset({'self'})
TERMS = (
    # Kim et al. (ICCV 2021), progressive self-knowledge distillation
    Term('pskd', progressive, part=_pskd_part, reads_examples=True, mixup=False,
         combines_with=_ONLY_WITH_HEADS, carries_ce=True),
    # Yun et al. (CVPR 2020), class-wise self-knowledge distillation
    Term('cskd', class_wise, composition='pairs', mixup=False,
         combines_with=_ONLY_WITH_HEADS),
    # Yuan et al. (CVPR 2020), teacher-free KD with a virtual teacher
    Term('tfkdreg', virtual_teacher, mixup=False, combines_with=_ONLY_WITH_HEADS),
    # Shen et al. (CVPR 2022), self-distillation from the last mini-batch
    Term('dlb', last_batch, part=_dlb_part, composition='carry', mixup=False,
         combines_with=_ONLY_WITH_HEADS),
    # Yang et al. (ICCV 2023), unified self-knowledge distillation
    Term('uskd', unified, part=_weak_head, combines_with=_ONLY_WITH_HEADS),
)
