"""Feature-based terms that train modules of their own beside the student
(Term.part): VID's regressors and variances, OFD's connectors, ReviewKD's
fusion blocks, SRD's connector."""
import functools
import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax import losses
from kdjax.methods import feature
from kdjax.methods.terms import Context, ramp, Term
from kdjax.models import layers


class VariationalRegressors(nn.Module):
  """VID's learned parts (mdistiller's VID.py): for each stage pair a regressor
  of the student stage to the teacher stage's channels (1x1 conv, ReLU, 1x1
  conv, ReLU, 1x1 conv, no biases, PyTorch's init) and per-channel variances
  softplus(log_scale) + eps, log_scale starting where the variance is
  init_variance."""
  teacher_channels: Sequence[int]
  init_variance: float
  eps: float

  @nn.compact
  def __call__(self, student_stages):
    start = math.log(math.exp(self.init_variance - self.eps) - 1.0)
    means, variances = [], []
    for i, (stage, channels) in enumerate(zip(student_stages, self.teacher_channels)):
      x = stage.astype(jnp.float32)
      for j in range(3):
        if j:
          x = nn.relu(x)
        x = nn.Conv(channels, (1, 1), use_bias=False, kernel_init=layers.torch_default_init,
                    name=f'regressor{i}_conv{j}')(x)
      log_scale = self.param(f'log_scale{i}', nn.initializers.constant(start), (channels,))
      means.append(x)
      variances.append(jax.nn.softplus(log_scale) + self.eps)
    return means, variances


def _vid_part(config, ctx: Context):
  return VariationalRegressors(tuple(t.shape[-1] for _, t in feature.stage_pairs(ctx)),
                               config.vid_init_variance, config.vid_eps)


def variational(ctx: Context):
  pairs = feature.stage_pairs(ctx)
  means, variances = ctx.part([s for s, _ in pairs])
  return ctx.config.vid_weight * sum(
      losses.variational_information(m, v, t) for m, v, (_, t) in zip(means, variances, pairs))


def _upsample(x, size):
  """Nearest-neighbour upsampling of NHWC maps to size x size, as
  F.interpolate(mode='nearest') for the whole multiples ReviewKD meets."""
  factor = size // x.shape[1]
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


# kaiming_uniform_(a=1), ReviewKD's init of its convs: U(+-sqrt(3 / fan_in)).
_kaiming_a1 = nn.initializers.variance_scaling(1.0, 'fan_in', 'uniform')


class AttentionFusion(nn.Module):
  """ReviewKD's ABF (mdistiller's ReviewKD.py): the student feature through
  1x1 conv + BN, fused with the deeper level's upsampled result by a learned
  two-way attention (1x1 conv, sigmoid) unless it is the deepest, then 3x3
  conv + BN to the teacher's channels. BN normalizes over the global batch, in
  training mode as the reference trains it. Returns (output, residual)."""
  mid_channels: int
  out_channels: int
  fuse: bool
  axis_name: Optional[str]

  @nn.compact
  def __call__(self, x, residual=None):
    norm = functools.partial(nn.BatchNorm, use_running_average=False, momentum=0.9,
                             epsilon=layers.BN_EPSILON, use_fast_variance=False,
                             axis_name=self.axis_name)
    x = norm(name='bn1')(nn.Conv(self.mid_channels, (1, 1), use_bias=False,
                                 kernel_init=_kaiming_a1, name='conv1')(x))
    if self.fuse:
      residual = _upsample(residual, x.shape[1])
      attention = jax.nn.sigmoid(nn.Conv(
          2, (1, 1), kernel_init=layers.torch_default_init,
          bias_init=layers.torch_bias_init(2 * self.mid_channels),
          name='att_conv')(jnp.concatenate([x, residual], -1)))
      x = x * attention[..., :1] + residual * attention[..., 1:]
    y = norm(name='bn2')(nn.Conv(self.out_channels, (3, 3), padding=((1, 1), (1, 1)),
                                 use_bias=False, kernel_init=_kaiming_a1, name='conv2')(x))
    return y, x


class ReviewFusion(nn.Module):
  """ReviewKD's review of the student's features (shallow -> deep, the pooled
  feature last as a 1x1 map): from the deepest, each level's ABF fuses its
  feature with the deeper levels' residual; returns each level's output
  (shallow -> deep), with the teacher's channels."""
  mid_channels: int
  out_channels: Sequence[int]
  axis_name: Optional[str]

  @nn.compact
  def __call__(self, features):
    levels = len(features)
    outputs, residual = [], None
    for i in reversed(range(levels)):
      out, residual = AttentionFusion(self.mid_channels, self.out_channels[i],
                                      i < levels - 1, self.axis_name, name=f'abf{i}')(
                                          features[i].astype(jnp.float32), residual)
      outputs.insert(0, out)
    return outputs


def _review_levels(ctx: Context):
  """(the student's features, the teacher's) ReviewKD compares, shallow ->
  deep: the paired stages (the teacher's before their last ReLU, the
  student's too with config.reviewkd_student_preact) and the pooled features
  as 1x1 maps."""
  pairs = feature.stage_pairs(ctx, 'stage_preact', 'stage_preact'
                              if ctx.config.reviewkd_student_preact else 'stage_features')
  pooled = lambda outputs: outputs['feature'][:, None, None, :]
  return ([s for s, _ in pairs] + [pooled(ctx.student)],
          [t for _, t in pairs] + [pooled(ctx.teacher)])


def _review_part(config, ctx: Context):
  del config
  _, teacher = _review_levels(ctx)
  return ReviewFusion(min(512, ctx.student['feature'].shape[-1]),
                      tuple(t.shape[-1] for t in teacher), ctx.axis_name)


def review(ctx: Context):
  student, teacher = _review_levels(ctx)
  config = ctx.config
  return (ramp(ctx.epoch, config.reviewkd_warmup_epochs) * config.reviewkd_weight
          * losses.hierarchical_context(ctx.part(student), teacher))


class Connectors(nn.Module):
  """OFD's connectors (mdistiller's OFD.py ConnectorConvBN): each paired
  student stage before its last ReLU through a 1x1 conv (no bias, normal init
  of std sqrt(2 / out channels)) and BN (over the global batch, training mode)
  to the teacher stage's channels."""
  teacher_channels: Sequence[int]
  axis_name: Optional[str]

  @nn.compact
  def __call__(self, stages):
    connected = []
    for i, (stage, channels) in enumerate(zip(stages, self.teacher_channels)):
      x = nn.Conv(channels, (1, 1), use_bias=False,
                  kernel_init=nn.initializers.normal(math.sqrt(2.0 / channels)),
                  name=f'connector{i}_conv')(stage.astype(jnp.float32))
      connected.append(nn.BatchNorm(use_running_average=False, momentum=0.9,
                                    epsilon=layers.BN_EPSILON, use_fast_variance=False,
                                    axis_name=self.axis_name, name=f'connector{i}_bn')(x))
    return connected


def _ofd_part(config, ctx: Context):
  del config
  return Connectors(tuple(t.shape[-1] for _, t in feature.stage_pairs(ctx, 'stage_preact')),
                    ctx.axis_name)


def overhaul(ctx: Context):
  # Both sides before their last ReLU; deeper pairs weigh more: 1/2^(pairs - 1 - i).
  pairs = feature.stage_pairs(ctx, 'stage_preact', 'stage_preact')
  priors = ctx.teacher['stage_preact_prior']
  connected = ctx.part([s for s, _ in pairs])
  total = 0.0
  for i, (source, (_, target), t) in enumerate(zip(connected, pairs,
                                                   feature.stage_pairing(ctx))):
    margin = losses.overhaul_margin(*priors[t])
    total += losses.partial_l2(source, target, margin) / 2**(len(pairs) - 1 - i)
  return ctx.config.ofd_weight * total


class SoftmaxRegressionConnector(nn.Module):
  """SRD's connector (KD_SRRL distiller_zoo/AIN.py transfer_conv): the
  student's last map through a 1x1 conv (no bias, normal init of std
  sqrt(2 / out channels)), BN (over the global batch, training mode) and
  ReLU to the teacher's channels, then pooled."""
  channels: int
  axis_name: Optional[str]

  @nn.compact
  def __call__(self, last_map):
    x = nn.Conv(self.channels, (1, 1), use_bias=False,
                kernel_init=nn.initializers.normal(math.sqrt(2.0 / self.channels)),
                name='conv')(last_map.astype(jnp.float32))
    x = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=layers.BN_EPSILON,
                     use_fast_variance=False, axis_name=self.axis_name, name='bn')(x)
    return jnp.mean(nn.relu(x), axis=(1, 2))


def _srd_part(config, ctx: Context):
  del config
  return SoftmaxRegressionConnector(ctx.teacher['feature'].shape[-1], ctx.axis_name)


def softmax_regression(ctx: Context):
  # The teacher's classifier reads the student's connected feature.
  classifier = ctx.teacher_variables['params']['classifier']
  feature_term, logit_term = losses.srd(
      ctx.part(ctx.student['stage_features'][-1]), ctx.teacher['feature'],
      classifier['kernel'], classifier['bias'], ctx.teacher['logits'])
  return ctx.config.srd_feature_weight * feature_term + ctx.config.srd_logit_weight * logit_term


TERMS = (
    # Ahn et al. (CVPR 2019), variational information distillation on every stage
    Term('vid', variational, teacher=True, pairs_stages=True, part=_vid_part),
    # Heo et al. (ICCV 2019), a comprehensive overhaul of feature distillation
    Term('ofd', overhaul, teacher=True, pairs_stages=True, part=_ofd_part,
         teacher_outputs=('stage_preact_prior',)),
    # Chen et al. (CVPR 2021), knowledge review: fused student levels against every
    # teacher stage
    Term('reviewkd', review, teacher=True, pairs_stages=True, part=_review_part),
    # Yang et al. (ICLR 2021), softmax regression representation learning: the
    # connected student feature against the teacher's, and through its classifier
    Term('srd', softmax_regression, teacher=True, part=_srd_part),
)
