"""RepVGG (Ding et al., 2021) for CIFAR in Flax linen, and its fusion to deploy form.

Layout of chenyaofo/pytorch-cifar-models' cifar100_repvgg_a0: stages of
1/2/4/14/1 blocks and widths 48/48/96/192/1280 (the paper's A0 multipliers
a = 0.75, b = 2.5 on a base width of 64), the first two stages at stride 1.
A training-time block sums a 3x3 conv + BN, a 1x1 conv + BN and (when the shape
allows) a BN of the input; `fuse` folds the three into one 3x3 conv with bias
that gives the same eval-mode outputs.
"""
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kdjax.models import layers


class RepVGGBlock(nn.Module):
  """Returns (output, output before its ReLU)."""
  features: int
  strides: int
  deploy: bool
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, x):
    strides = (self.strides, self.strides)
    if self.deploy:
      y = self.conv(self.features, (3, 3), strides, padding=((1, 1), (1, 1)), use_bias=True,
                    name='rbr_reparam')(x)
      return nn.relu(y), y
    y = self.norm(name='rbr_dense_bn')(self.conv(
        self.features, (3, 3), strides, padding=((1, 1), (1, 1)), name='rbr_dense_conv')(x))
    y += self.norm(name='rbr_1x1_bn')(self.conv(
        self.features, (1, 1), strides, padding='VALID', name='rbr_1x1_conv')(x))
    if x.shape[-1] == self.features and self.strides == 1:
      y += self.norm(name='rbr_identity')(x)
    return nn.relu(y), y


# RepVGG-A0's stage widths as multiples of the base width.
A0_WIDTH_MULTIPLIERS = (0.75, 0.75, 1.5, 3, 20)


class RepVGG(nn.Module):
  """Returns {'logits', 'position_logits', 'feature', 'stage_features',
  'stage_preact'} like ResNet (and `hint` with `hint_channels`); `deploy` selects the fused form.
  Unfused, also 'stage_preact_prior' like ResNet's: the sum of the last
  block's branches, taken as independent normals N(sum of BN biases, sum of
  squared BN scales)."""
  num_classes: int
  stage_sizes: Sequence[int] = (1, 2, 4, 14, 1)
  width: int = 64  # base width; stage widths are A0_WIDTH_MULTIPLIERS times it
  hint_stage: int = 1
  hint_channels: int = 0
  deploy: bool = False
  dtype: Any = jnp.float32
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool):
    if len(self.stage_sizes) != len(A0_WIDTH_MULTIPLIERS):
      raise ValueError(f'RepVGG has {len(A0_WIDTH_MULTIPLIERS)} stages, but stage_sizes '
                       f'{tuple(self.stage_sizes)} gives {len(self.stage_sizes)}; give '
                       f'{len(A0_WIDTH_MULTIPLIERS)} block counts, or () for its own.')
    widths = [max(1, round(m * self.width)) for m in A0_WIDTH_MULTIPLIERS]
    conv, norm, dense = layers.torch_layers(self.dtype, train, self.axis_name, widths[-1])
    stages, preacts, priors = [], [], []
    for i, (num_blocks, width) in enumerate(zip(self.stage_sizes, widths)):
      for j in range(num_blocks):
        strides = 2 if i >= 2 and j == 0 else 1  # CIFAR: stages 0 and 1 keep 32x32
        block = RepVGGBlock(width, strides, self.deploy, conv, norm,
                            name=f'stage{i}_block{j + 1}')
        x, preact = block(x)
      stages.append(x)
      preacts.append(preact)
      if not self.deploy:
        bns = [v for k, v in block.variables['params'].items() if not k.endswith('_conv')]
        priors.append((sum(bn['bias'] for bn in bns),
                       jnp.sqrt(sum(bn['scale']**2 for bn in bns))))
    feature = jnp.mean(x, axis=(1, 2))
    classifier = dense(self.num_classes, name='classifier')
    outputs = {'logits': classifier(feature), 'position_logits': classifier(x),
               'feature': feature, 'stage_features': tuple(stages),
               'stage_preact': tuple(preacts)}
    if priors:
      outputs['stage_preact_prior'] = tuple(priors)
    outputs = layers.add_hint(outputs, self.hint_stage, self.hint_channels, conv, norm)
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), outputs)


RepVGGA0 = RepVGG


def _fold_bn(kernel, bn_params, bn_stats):
  """kernel * gamma / std and beta - mean * gamma / std of a conv followed by BN."""
  scale = bn_params['scale'] / np.sqrt(bn_stats['var'] + layers.BN_EPSILON)
  return kernel * scale, bn_params['bias'] - bn_stats['mean'] * scale


def _fuse_block(params, stats):
  kernel, bias = _fold_bn(params['rbr_dense_conv']['kernel'], params['rbr_dense_bn'],
                          stats['rbr_dense_bn'])
  k1, b1 = _fold_bn(params['rbr_1x1_conv']['kernel'], params['rbr_1x1_bn'],
                    stats['rbr_1x1_bn'])
  kernel = kernel + np.pad(k1, ((1, 1), (1, 1), (0, 0), (0, 0)))  # 1x1 at the 3x3 centre
  bias = bias + b1
  if 'rbr_identity' in params:
    channels = kernel.shape[-1]
    identity = np.zeros((3, 3, channels, channels), kernel.dtype)
    identity[1, 1, np.arange(channels), np.arange(channels)] = 1
    ki, bi = _fold_bn(identity, params['rbr_identity'], stats['rbr_identity'])
    kernel, bias = kernel + ki, bias + bi
  return {'rbr_reparam': {'kernel': kernel, 'bias': bias}}


def fuse(variables):
  """Deploy-form variables (one 3x3 conv with bias per block, no BatchNorm
  statistics in the blocks) equal in eval mode to the training-form `variables`."""
  variables = jax.tree.map(np.asarray, variables)
  params, stats = variables['params'], variables['batch_stats']
  fused = {name: (_fuse_block(p, stats[name]) if name.startswith('stage') else p)
           for name, p in params.items()}
  # A FitNets-trained student's hint regressor keeps its BatchNorm.
  return {'params': fused,
          'batch_stats': {k: v for k, v in stats.items() if not k.startswith('stage')}}
