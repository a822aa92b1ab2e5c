"""Response-based terms: the student learns from the teacher's logits."""
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


TERMS = (
    # Hinton et al. (2015): T^2 KL to a frozen teacher's softened logits
    Term('offline', offline, teacher=True),
    # Zhao et al. (CVPR 2022), Decoupled KD: target and non-target KL apart
    Term('dkd', dkd, teacher=True),
    # Huang et al. (NeurIPS 2022), DIST: inter- and intra-class Pearson relations
    Term('dist', dist, teacher=True),
)
