"""Response-based terms: the student learns from the teacher's logits (or,
for SDD, the logits of regions of the last map)."""
import flax.linen as nn
import jax.numpy as jnp

from kdjax import losses
from kdjax.methods.terms import Context, ramp, Term

# config.kd_reduction: how the offline KL is averaged. 'mean' is torch's
# nn.KLDivLoss() default, the study's: over the batch and the classes, i.e.
# the batch mean divided by the class count; 'batchmean' is the batch mean
# (Hinton's, RepDistiller's and Be Your Own Teacher's soft cross-entropy).
KD_REDUCTIONS = ('mean', 'batchmean')


def _logits(ctx: Context):
  """(student, teacher) logits, z-scored per example with
  config.logit_standardization (Sun et al., 2024) before any temperature."""
  student, teacher = ctx.student['logits'], ctx.teacher['logits']
  if ctx.config.logit_standardization:
    return losses.standardize(student), losses.standardize(teacher)
  return student, teacher


def offline(ctx: Context):
  student, teacher = _logits(ctx)
  kd = losses.kl_divergence(student, teacher, ctx.config.kd_temperature)
  if ctx.config.kd_reduction == 'mean':
    kd /= student.shape[-1]
  return ctx.config.kd_weight * kd


def dkd(ctx: Context):
  # An example's target classes are those its label distribution weighs: its
  # label, and with mixup its partner's too (the decoupling then separates
  # both mixed classes from the other 98).
  student, teacher = _logits(ctx)
  config = ctx.config
  return ramp(ctx.epoch, config.dkd_warmup_epochs) * losses.dkd(
      student, teacher, ctx.targets > 0, config.dkd_alpha, config.dkd_beta,
      config.dkd_temperature)


def dist(ctx: Context):
  # The intra-class relation compares each class's predictions across the
  # global batch, gathered from every device as on one.
  config = ctx.config
  student, teacher = ctx.student['logits'], ctx.teacher['logits']
  inter = losses.dist_inter(student, teacher, config.dist_temperature)
  intra = losses.dist_intra(ctx.gather(student), ctx.gather(teacher), config.dist_temperature)
  return config.dist_weight * (config.dist_beta * inter + config.dist_gamma * intra)


def ttm(ctx: Context):
  return ctx.config.ttm_weight * losses.ttm(ctx.student['logits'], ctx.teacher['logits'],
                                            ctx.config.ttm_exponent)


def wttm(ctx: Context):
  return ctx.config.ttm_weight * losses.wttm(ctx.student['logits'], ctx.teacher['logits'],
                                             ctx.config.ttm_exponent)


def nkd(ctx: Context):
  config = ctx.config
  return losses.nkd(ctx.student['logits'], ctx.teacher['logits'],
                    jnp.argmax(ctx.own_targets, -1), config.nkd_temperature, config.nkd_gamma)


class LearnedTemperature(nn.Module):
  """CTKD's global temperature parameter (models/temp_global.py: ones(1))."""

  @nn.compact
  def __call__(self):
    return self.param('temperature', nn.initializers.ones, (1,))


def _ctkd_part(config, ctx: Context):
  del config, ctx
  return LearnedTemperature()


def ctkd(ctx: Context):
  # lam follows the epoch (1-based); without a step the ramp is complete.
  config = ctx.config
  epoch = config.ctkd_lambda_epochs if ctx.epoch is None else ctx.epoch
  lam = losses.ctkd_lambda(epoch, config.ctkd_lambda_epochs)
  return config.kd_weight * losses.ctkd(ctx.student['logits'], ctx.teacher['logits'],
                                        ctx.part()[0], lam, config.ctkd_t_start,
                                        config.ctkd_t_end)


def _ctkd_records(config, params):
  return {'temperature': float(losses.ctkd_temperature(
      params['temperature'][0], config.ctkd_t_start, config.ctkd_t_end))}


# The temperatures MLKD adds to the config's (KD_ours.py).
MLKD_TEMPERATURES = (3.0, 5.0, 2.0, 6.0)


def _views(x):
  """(first view, second view) of an output whose rows hold both ('views')."""
  return x[:len(x) // 2], x[len(x) // 2:]


def mlkd(ctx: Context):
  # Both views' cross-entropies (the reference sums them), then the levels on
  # the global batch, where the masks' medians are taken.
  config = ctx.config
  student, teacher = _views(ctx.student['logits']), _views(ctx.teacher['logits'])
  targets = _views(ctx.targets)
  ce = sum(losses.soft_cross_entropy(s, t) for s, t in zip(student, targets))
  temperatures = (config.kd_temperature, *MLKD_TEMPERATURES)
  return ctx.ce_weight * ce + config.kd_weight * losses.mlkd(
      *map(ctx.gather, (*student, *teacher)), temperatures)


def sdd(ctx: Context):
  config = ctx.config
  return config.kd_weight * losses.sdd(
      ctx.student['position_logits'], ctx.teacher['position_logits'],
      jnp.argmax(ctx.own_targets, -1), config.kd_temperature, tuple(config.sdd_scales))


def sdddkd(ctx: Context):
  config = ctx.config
  return ramp(ctx.epoch, config.dkd_warmup_epochs) * losses.sdd_dkd(
      ctx.student['position_logits'], ctx.teacher['position_logits'],
      jnp.argmax(ctx.own_targets, -1), config.dkd_alpha, config.dkd_beta,
      config.dkd_temperature, tuple(config.sdd_scales))


TERMS = (
    # Hinton et al. (2015): T^2 KL to a frozen teacher's softened logits
    Term('offline', offline, teacher=True),
    # Zhao et al. (CVPR 2022), Decoupled KD: target and non-target KL apart
    Term('dkd', dkd, teacher=True),
    # Huang et al. (NeurIPS 2022), DIST: inter- and intra-class Pearson relations
    Term('dist', dist, teacher=True),
    # Zheng & Yang (ICLR 2024), transformed teacher matching: a power-transformed
    # teacher, and its weighted form
    Term('ttm', ttm, teacher=True),
    Term('wttm', wttm, teacher=True),
    # Yang et al. (ICCV 2023), normalized KD: target and normalized non-target parts
    Term('nkd', nkd, teacher=True, mixup=False),
    # Li et al. (AAAI 2023), curriculum temperature: a learned, adversarial temperature
    Term('ctkd', ctkd, teacher=True, part=_ctkd_part, records=_ctkd_records),
    # Jin et al. (CVPR 2023), multi-level logit distillation on a weak and a strong view
    Term('mlkd', mlkd, teacher=True, composition='views', mixup=False, carries_ce=True),
    # Wei et al. (CVPR 2024), scale decoupled distillation: KD, or DKD, per region
    Term('sdd', sdd, teacher=True, mixup=False, teacher_outputs=('position_logits',)),
    Term('sdddkd', sdddkd, teacher=True, mixup=False, teacher_outputs=('position_logits',)),
)
