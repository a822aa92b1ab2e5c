"""The PyTorch key layouts kdjax converts from and exports to.

  chenyaofo     chenyaofo/pytorch-cifar-models' RepVGG (stage0.rbr_dense.conv.weight,
                ..., linear)
  repdistiller  RepDistiller / mdistiller CIFAR ResNets (layerX.Y.shortcut.*, linear)
  timm          timm-style CIFAR ResNets (layerX.Y.downsample.*, fc)
  torchvision   torchvision.models.resnet18/34/50 (the timm-style keys, a 7x7
                conv1 and ImageNet's stem): its ImageNet weights, and what
                kdjax exports ImageNet-stem students in
  byot          Be Your Own Teacher's Multi_ResNet (luanyunteng/pytorch-be-your-
                own-teacher, which the study's code also loads: the timm-style
                body plus bottleneck{i}_1.*, middle_fc{i}.*), with its heads
  study         the study's src/cifar_resnet.py (conv1.0, conv2_x.0.residual_function.0,
                ..., fc; MultiResNet's middle_classfier_{i}) at any width and
                blocks per stage: what kdjax exports CIFAR-stem ResNets in
`module_key` maps a Flax module path to the layout's PyTorch module path.
"""
import re
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from kdjax import data
from kdjax import errors
from kdjax.data import imagenet

# The input (height, width, channels) of the checkpoints kdjax converts: CIFAR's,
# and ImageNet's crop (torchvision's layout).
CIFAR_SHAPE = (32, 32, 3)
IMAGENET_SHAPE = (224, 224, 3)
# The input normalization each layout's teachers were trained with: chenyaofo's
# (image-classification-codebase conf/cifar100.conf) and RepDistiller's
# (dataset/cifar100.py, which mdistiller keeps). timm-layout CIFAR checkpoints
# have no single source; they get RepDistiller's, and --mean/--std override it.
NORMALIZATION = {
    'chenyaofo': ((0.5070, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)),
    'repdistiller': ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    'timm': ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    # the study's src/data.py (what kdjax exports ResNets in)
    'study': (data.CIFAR100_MEAN, data.CIFAR100_STD),
    # Be Your Own Teacher's dataset/data.py normalizes CIFAR-100 with CIFAR-10's
    # statistics.
    'byot': ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    # torchvision's ImageNet weights (its transforms' ImageNet mean and std).
    'torchvision': (imagenet.MEAN, imagenet.STD),
}
# Multi_ResNet defines downsample{i}_1 (a 1x1 conv + BN per head) but its
# forward never calls it: those keys hold nothing the model computes with.
UNUSED = {'byot': re.compile(r'downsample\d+_1\.')}
# BYOT's branchBottleNeck is an nn.Sequential: conv, BN, ReLU, three times.
_BYOT_HEAD = {'conv1': '0', 'bn1': '1', 'conv2': '3', 'bn2': '4', 'conv3': '6', 'bn3': '7'}
PARAM_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
                'mean': 'running_mean', 'var': 'running_var'}


class ConversionError(errors.UserError, ValueError):
  """A state_dict that does not match the architecture, naming the keys."""


def detect_layout(arch: str, state_dict: Mapping[str, Any]) -> str:
  """The layout (this module's names) of a state_dict (key -> array) of architecture `arch`."""
  keys = set(state_dict)
  if arch == 'repvgg_a0':
    if 'stage0.rbr_dense.conv.weight' in keys:
      return 'chenyaofo'
  elif arch in ('resnet18', 'resnet34', 'resnet50'):
    if 'conv2_x.0.residual_function.0.weight' in keys:
      return 'study'
    if 'bottleneck1_1.0.weight' in keys and 'fc.weight' in keys:
      return 'byot'
    if 'linear.weight' in keys and 'fc.weight' not in keys:
      return 'repdistiller'
    if 'fc.weight' in keys and 'linear.weight' not in keys:
      # torchvision's ImageNet stem is a 7x7 conv; a CIFAR stem a 3x3 one.
      stem = np.shape(state_dict.get('conv1.weight', ()))
      return 'torchvision' if stem[-1:] == (7,) else 'timm'
  else:
    raise ConversionError(f'No converter for {arch!r}; known: repvgg_a0, resnet18, resnet34, '
                          'resnet50.')
  raise ConversionError(
      f'Cannot tell the key layout of this {arch} state_dict (first keys: '
      f'{sorted(keys)[:5]}); expected the layout of '
      f'{"chenyaofo/pytorch-cifar-models" if arch == "repvgg_a0" else "RepDistiller (linear), torchvision or timm (fc), Be Your Own Teacher (bottleneck1_1, middle_fc1) or the study (conv2_x)"}.')


# The study's src/cifar_resnet.py: a block's residual_function is one
# nn.Sequential (conv, BN, ReLU, ...), a head's kd_bottleneck another.
_STUDY_SEQUENCE = {'conv1': '0', 'bn1': '1', 'conv2': '3', 'bn2': '4', 'conv3': '6', 'bn3': '7'}
_STUDY_STAGE = re.compile(r'conv(\d+)_x\.(\d+)\.')


def model_kwargs(layout: str, keys=()) -> Dict[str, Any]:
  """The kdjax constructor arguments of a layout's model: Multi_ResNet has
  heads, torchvision's the ImageNet stem; the study's layout also tells its
  width and blocks per stage from its `keys` and shapes (a state_dict), which
  kdjax exports at any size."""
  if layout == 'byot':
    return {'heads': True}
  if layout == 'torchvision':
    return {'stem': 'imagenet'}
  if layout != 'study':
    return {}
  blocks = {}
  for key in keys:
    stage = _STUDY_STAGE.match(key)
    if stage:
      blocks.setdefault(int(stage[1]), set()).add(int(stage[2]))
  kwargs = {'width': int(np.shape(keys['conv1.0.weight'])[0]),
            'stage_sizes': tuple(len(blocks[s]) for s in sorted(blocks))}
  if any(k.startswith('middle_classfier_') for k in keys):
    kwargs['heads'] = True
  return kwargs


def image_shape(arch: str, layout: str, state_dict) -> Tuple[int, int, int]:
  """The shape of the images the checkpoint's model reads: ImageNet's crop in
  torchvision's layout, else CIFAR's, with the channels of its first conv."""
  first_conv = 'stage0_block1/rbr_dense_conv' if arch == 'repvgg_a0' else 'stem_conv'
  stem = f'{module_key(arch, layout, first_conv)}.weight'
  channels = int(np.shape(state_dict[stem])[1]) if stem in state_dict else CIFAR_SHAPE[-1]
  return (*(IMAGENET_SHAPE if layout == 'torchvision' else CIFAR_SHAPE)[:2], channels)


def module_key(arch, layout, module):
  """The PyTorch module path of a Flax module path."""
  if module == 'classifier':
    return 'linear' if layout in ('repdistiller', 'chenyaofo') else 'fc'
  head = re.fullmatch(r'head(\d+)/(\w+)', module)
  if head and layout == 'study':
    index, part = head.groups()
    return (f'middle_classfier_{index}.middle_fc' if part == 'classifier'
            else f'middle_classfier_{index}.kd_bottleneck.{_STUDY_SEQUENCE[part]}')
  if head:
    index, part = head.groups()
    return (f'middle_fc{index}' if part == 'classifier'
            else f'bottleneck{index}_1.{_BYOT_HEAD[part]}')
  if layout == 'study':
    if module in ('stem_conv', 'stem_bn'):
      return {'stem_conv': 'conv1.0', 'stem_bn': 'conv1.1'}[module]
    stage, block, rest = re.fullmatch(r'stage(\d+)_block(\d+)/(.+)', module).groups()
    rest = ({'shortcut_conv': 'shortcut.0', 'shortcut_bn': 'shortcut.1'}.get(rest)
            or f'residual_function.{_STUDY_SEQUENCE[rest]}')
    return f'conv{int(stage) + 1}_x.{int(block) - 1}.{rest}'
  if arch == 'repvgg_a0':
    stage, block, rest = re.fullmatch(r'stage(\d+)_block(\d+)/(.+)', module).groups()
    prefix = f'stage{stage}' if stage == '0' else f'stage{stage}.{int(block) - 1}'
    rest = {'rbr_dense_conv': 'rbr_dense.conv', 'rbr_dense_bn': 'rbr_dense.bn',
            'rbr_1x1_conv': 'rbr_1x1.conv', 'rbr_1x1_bn': 'rbr_1x1.bn'}.get(rest, rest)
    return f'{prefix}.{rest}'
  if module in ('stem_conv', 'stem_bn'):
    return {'stem_conv': 'conv1', 'stem_bn': 'bn1'}[module]
  stage, block, rest = re.fullmatch(r'stage(\d+)_block(\d+)/(.+)', module).groups()
  shortcut = 'shortcut' if layout == 'repdistiller' else 'downsample'
  rest = {'shortcut_conv': f'{shortcut}.0', 'shortcut_bn': f'{shortcut}.1'}.get(rest, rest)
  return f'layer{stage}.{int(block) - 1}.{rest}'


def to_flax(value: np.ndarray, name: str) -> np.ndarray:
  """A PyTorch tensor as Flax holds variable `name`."""
  if name == 'kernel' and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if name == 'kernel' and value.ndim == 2:
    return value.T  # (out, in) -> (in, out)
  return value


def to_torch(value: np.ndarray, name: str) -> np.ndarray:
  """to_flax's inverse: a Flax variable as PyTorch holds it."""
  if name == 'kernel' and value.ndim == 4:
    return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
  if name == 'kernel' and value.ndim == 2:
    return value.T
  return value


