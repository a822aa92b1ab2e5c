"""CIFAR ResNets (3x3 stride-1 stem, no max-pool) in Flax linen.

Numerics follow the PyTorch reference models: explicit symmetric padding,
BatchNorm with PyTorch's momentum/epsilon, and PyTorch's default init.
"""
import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

# torch.nn.Conv2d / nn.Linear default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def torch_bias_init(fan_in: int):
  bound = fan_in**-0.5
  return lambda key, shape, dtype=jnp.float32: nn.initializers.uniform(2 * bound)(
      key, shape, dtype) - bound


class BasicBlock(nn.Module):
  """Two 3x3 convs with a projection shortcut when the shape changes."""
  filters: int
  strides: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]

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
    return nn.relu(x + y)


class ResNet(nn.Module):
  """CIFAR ResNet returning {'logits', 'feature'} as DESIGN.md specifies."""
  stage_sizes: Sequence[int]
  block_cls: Any
  num_classes: int
  width: int = 64
  dtype: Any = jnp.float32
  # Set under pmap so BatchNorm statistics cover the global batch.
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             kernel_init=torch_default_init)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                             use_fast_variance=False, axis_name=self.axis_name)
    x = conv(self.width, (3, 3), padding=((1, 1), (1, 1)), name='stem_conv')(x)
    x = nn.relu(norm(name='stem_bn')(x))
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        x = self.block_cls(self.width * 2**i, strides, conv, norm,
                           name=f'stage{i + 1}_block{j + 1}')(x)
    feature = jnp.mean(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype,
                      kernel_init=torch_default_init,
                      bias_init=torch_bias_init(feature.shape[-1]),
                      name='classifier')(feature)
    return {'logits': jnp.asarray(logits, jnp.float32),
            'feature': jnp.asarray(feature, jnp.float32)}


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
