"""ResNets in Flax linen, in two layouts that differ only in their stem:
CIFAR's (a 3x3 stride-1 conv, no max-pool: RepDistiller's, the study's) and
torchvision's ImageNet one (a 7x7 stride-2 conv, then a 3x3 stride-2 max-pool:
torchvision.models.resnet18/34/50, mdistiller's ImageNet ResNets), whose
convolutions start from torchvision's init."""
import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple

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


class Stem(NamedTuple):
  conv: Tuple[Any, ...]  # the stem conv's (kernel, strides, padding)
  conv_init: Callable  # every conv's kernel init


STEMS = {
    # PyTorch's default init, as RepDistiller's and the study's CIFAR ResNets keep.
    'cifar': Stem(((3, 3), (1, 1), ((1, 1), (1, 1))), layers.torch_default_init),
    # torchvision's kaiming_normal_(mode='fan_out', nonlinearity='relu'), which
    # mdistiller's ImageNet ResNets write as normal(0, sqrt(2 / (k * k * out))).
    'imagenet': Stem(((7, 7), (2, 2), ((3, 3), (3, 3))),
                     nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')),
}


class ResNet(nn.Module):
  """A ResNet (its stem a STEMS name) returning {'logits', 'position_logits'
  (the classifier at every position of the last map, [B, H, W, classes]: SDD's;
  unused, XLA drops them), 'feature' (pooled, pre-classifier),
  'stage_features'} (the stages' outputs, shallow -> deep),
  'stage_preact'
  (the same before their last ReLU, as OFD and ReviewKD read a teacher) and
  'stage_preact_prior' (for each stage (mean, std) per channel of the BN
  before that ReLU, from its parameters: OFD's margins).

  With `heads`, every stage but the last also feeds an IntermediateHead, whose
  k x k stride-k conv takes its stage's grid down to the last stage's (k = 8, 4,
  2 for four stages: 32 -> 4, 16 -> 4, 8 -> 4 on CIFAR; 56 -> 7, 28 -> 7, 14 -> 7
  at ImageNet's 224 px), and the output adds `head_logits` and `head_features`
  (tuples, shallow -> deep). With `hint_channels`, it adds FitNets' `hint` (see
  add_hint).
  """
  stage_sizes: Sequence[int]
  block_cls: Any
  num_classes: int
  width: int = 64
  heads: bool = False
  hint_stage: int = 1
  hint_channels: int = 0
  stem: str = 'cifar'  # a STEMS name
  dtype: Any = jnp.float32
  # Set under pmap so BatchNorm statistics cover the global batch.
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool):
    num_stages = len(self.stage_sizes)
    final_width = self.width * 2**(num_stages - 1) * self.block_cls.expansion
    # Every classifier (final and heads') reads a final_width feature.
    if self.stem not in STEMS:
      raise ValueError(f'Unknown stem {self.stem!r}; known: {list(STEMS)}.')
    conv, norm, dense = layers.torch_layers(self.dtype, train, self.axis_name, final_width,
                                            STEMS[self.stem].conv_init)
    x = conv(self.width, *STEMS[self.stem].conv, name='stem_conv')(x)
    x = nn.relu(norm(name='stem_bn')(x))
    if self.stem == 'imagenet':
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
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
    classifier = dense(self.num_classes, name='classifier')
    outputs = {'logits': classifier(feature), 'position_logits': classifier(x),
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
