"""Layers shared by kdjax's models, built to match their PyTorch references.

Numerics follow PyTorch: explicit symmetric padding (never 'SAME', which pads
stride-2 convolutions asymmetrically), BatchNorm with PyTorch's momentum and
epsilon, PyTorch's default initialization. Also the pieces the distillation
methods add to a model: Be Your Own Teacher's intermediate heads and FitNets'
hint regressor.
"""
import functools
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp


# torch.nn.Conv2d / nn.Linear default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d's


def torch_bias_init(fan_in: int):
  bound = fan_in**-0.5
  return lambda key, shape, dtype=jnp.float32: nn.initializers.uniform(2 * bound)(
      key, shape, dtype) - bound


def torch_layers(dtype, train: bool, axis_name: Optional[str], classifier_fan_in: int,
                 conv_init=torch_default_init):
  """Conv, BatchNorm and Dense constructors that match PyTorch's layers: its
  default init (convs: `conv_init`), and BN momentum 0.1 (0.9 in Flax's
  convention) and epsilon."""
  conv = functools.partial(nn.Conv, use_bias=False, dtype=dtype, kernel_init=conv_init)
  norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=BN_EPSILON, dtype=dtype, use_fast_variance=False,
                           axis_name=axis_name)
  dense = functools.partial(nn.Dense, dtype=dtype, kernel_init=torch_default_init,
                            bias_init=torch_bias_init(classifier_fan_in))
  return conv, norm, dense


def patch_conv(lhs, rhs, window_strides, padding, *, lhs_dilation, rhs_dilation,
               dimension_numbers, feature_group_count, precision):
  """nn.Conv's convolution for a kernel k x k, stride k, VALID: each output pixel
  reads its own patch, so on the CPU it is one matmul over the patches. XLA:CPU's
  gradient of a head's 8x8 stride-8 convolution (128 channels, 32x32 input,
  batch 128) took 1.67 s, the matmul's 0.19 s, with the same output. GPUs and
  TPUs run lax.conv_general_dilated itself."""
  del lhs_dilation, rhs_dilation, feature_group_count  # nn.Conv's defaults: none
  if jax.default_backend() != 'cpu':
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding,
                                        dimension_numbers=dimension_numbers,
                                        precision=precision)
  k = rhs.shape[0]
  # A VALID convolution never reads the last rows and columns of a grid that k
  # does not divide (Fashion-MNIST's 28x28 stages under an 8x8 head conv).
  n, h, w, c = lhs.shape
  lhs = lhs[:, :h - h % k, :w - w % k]
  patches = lhs.reshape(n, h // k, k, w // k, k, c).transpose(0, 1, 3, 2, 4, 5)
  return jnp.matmul(patches.reshape(n, h // k, w // k, k * k * c),
                    rhs.reshape(k * k * c, -1), precision=precision)


class IntermediateHead(nn.Module):
  """A Be Your Own Teacher bottleneck: a stage's output -> a feature the size of
  the final one (and its logits).

  1x1 conv -> BN -> ReLU, k x k stride-k conv down to the final grid -> BN -> ReLU,
  1x1 conv to the final width -> BN -> ReLU, global average pool, linear
  classifier. The convs carry biases, as the study's and Be Your Own Teacher's
  do (BN cancels them in the forward pass, but they are parameters there, so
  their checkpoints convert and parameter counts match).
  """
  features: int
  stride: int
  num_classes: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  dense: Callable[..., nn.Module]

  def _conv(self, x, features, kernel, name, **kwargs):
    return self.conv(features, (kernel, kernel), (kernel, kernel), padding='VALID',
                     use_bias=True, bias_init=torch_bias_init(x.shape[-1] * kernel**2),
                     name=name, **kwargs)(x)

  @nn.compact
  def __call__(self, x):
    middle = self.features // 4
    x = nn.relu(self.norm(name='bn1')(self._conv(x, middle, 1, 'conv1')))
    x = nn.relu(self.norm(name='bn2')(self._conv(x, middle, self.stride, 'conv2',
                                                 conv_general_dilated=patch_conv)))
    x = nn.relu(self.norm(name='bn3')(self._conv(x, self.features, 1, 'conv3')))
    feature = jnp.mean(x, axis=(1, 2))
    return feature, self.dense(self.num_classes, name='classifier')(feature)


class HintRegressor(nn.Module):
  """FitNets' regressor (Romero et al., 2015) as RepDistiller's ConvReg builds it
  (use_relu=True): a 1x1 conv + BN + ReLU from a student stage to the channel
  count of the teacher's hint."""
  features: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x):
    return nn.relu(self.norm(name='bn')(self.conv(self.features, (1, 1), padding='VALID',
                                                  name='conv')(x)))


def add_hint(outputs, hint_stage: int, hint_channels: int, conv, norm):
  """With `hint_channels`, adds `hint`: stage `hint_stage`'s output through a
  HintRegressor (created in the calling module's scope)."""
  if hint_channels:
    outputs['hint'] = HintRegressor(hint_channels, conv, norm, name='hint_regressor')(
        outputs['stage_features'][hint_stage])
  return outputs


