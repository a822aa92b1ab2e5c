"""CIFAR ResNets (3x3 stride-1 stem, no max-pool) in Flax linen."""
import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax.models import layers


class BasicBlock(nn.Module):
  """Two 3x3 convs with a projection shortcut when the shape changes; returns
  (output, output before its ReLU)."""
  filters: int
  strides: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  expansion = 1  # output channels per `filters`
  last_bn = 'bn2'  # the BN before the output's ReLU

  @nn.compact
  def __call__(self, x):
    y = self.conv(self.filters, (3, 3), (self.strides, self.strides),
                  padding=((1, 1), (1, 1)), name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), padding=((1, 1), (1, 1)), name='conv2')(y)
    y = self.norm(name='bn2')(y)
    if x.shape[-1] != self.filters or self.strides != 1:
      x = self.conv(self.filters, (1, 1), (self.strides, self.strides),
                    padding='VALID', name='shortcut_conv')(x)
      x = self.norm(name='shortcut_bn')(x)
    return nn.relu(x + y), x + y


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (carrying the stride, as in the CIFAR reference models) -> 1x1
  to 4 x filters, with a projection shortcut when the shape changes; returns
  (output, output before its ReLU)."""
  filters: int
  strides: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  expansion = 4
  last_bn = 'bn3'

  @nn.compact
  def __call__(self, x):
    out = self.filters * self.expansion
    y = nn.relu(self.norm(name='bn1')(
        self.conv(self.filters, (1, 1), padding='VALID', name='conv1')(x)))
    y = nn.relu(self.norm(name='bn2')(
        self.conv(self.filters, (3, 3), (self.strides, self.strides),
                  padding=((1, 1), (1, 1)), name='conv2')(y)))
    y = self.norm(name='bn3')(self.conv(out, (1, 1), padding='VALID', name='conv3')(y))
    if x.shape[-1] != out or self.strides != 1:
      x = self.conv(out, (1, 1), (self.strides, self.strides), padding='VALID',
                    name='shortcut_conv')(x)
      x = self.norm(name='shortcut_bn')(x)
    return nn.relu(x + y), x + y


class ResNet(nn.Module):
  """CIFAR ResNet returning {'logits', 'feature' (pooled, pre-classifier),
  'stage_features'} (the stages' outputs, shallow -> deep), 'stage_preact'
  (the same before their last ReLU, as OFD and ReviewKD read a teacher) and
  'stage_preact_prior' (for each stage (mean, std) per channel of the BN
  before that ReLU, from its parameters: OFD's margins).

  With `heads`, every stage but the last also feeds an IntermediateHead, and the
  output adds `head_logits` and `head_features` (tuples, shallow -> deep). With
  `hint_channels`, it adds FitNets' `hint` (see add_hint).
  """
  stage_sizes: Sequence[int]
  block_cls: Any
  num_classes: int
  width: int = 64
  heads: bool = False
  hint_stage: int = 1
  hint_channels: int = 0
  dtype: Any = jnp.float32
  # Set under pmap so BatchNorm statistics cover the global batch.
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool):
    num_stages = len(self.stage_sizes)
    final_width = self.width * 2**(num_stages - 1) * self.block_cls.expansion
    # Every classifier (final and heads') reads a final_width feature.
    conv, norm, dense = layers.torch_layers(self.dtype, train, self.axis_name, final_width)
    x = conv(self.width, (3, 3), padding=((1, 1), (1, 1)), name='stem_conv')(x)
    x = nn.relu(norm(name='stem_bn')(x))
    heads, stages, preacts, priors = [], [], [], []
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        block = self.block_cls(self.width * 2**i, strides, conv, norm,
                               name=f'stage{i + 1}_block{j + 1}')
        x, preact = block(x)
      stages.append(x)
      preacts.append(preact)
      bn = block.variables['params'][self.block_cls.last_bn]
      priors.append((bn['bias'], jnp.abs(bn['scale'])))
      if self.heads and i < num_stages - 1:
        # Stage i's grid is 2**(num_stages - 1 - i) times the final one.
        heads.append(layers.IntermediateHead(final_width, 2**(num_stages - 1 - i),
                                      self.num_classes, conv, norm, dense,
                                      name=f'head{i + 1}')(x))
    feature = jnp.mean(x, axis=(1, 2))
    outputs = {'logits': dense(self.num_classes, name='classifier')(feature),
               'feature': feature, 'stage_features': tuple(stages),
               'stage_preact': tuple(preacts), 'stage_preact_prior': tuple(priors)}
    if self.heads:
      outputs['head_features'] = tuple(f for f, _ in heads)
      outputs['head_logits'] = tuple(l for _, l in heads)
    outputs = layers.add_hint(outputs, self.hint_stage, self.hint_channels, conv, norm)
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), outputs)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)
