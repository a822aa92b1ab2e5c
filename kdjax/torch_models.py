"""PyTorch reference models with the public projects' module (and so key) names.

Written from the architectures of chenyaofo/pytorch-cifar-models (RepVGG),
RepDistiller / mdistiller (CIFAR ResNets with `shortcut` and `linear`),
timm-style CIFAR ResNets (`downsample` and `fc`) and Be Your Own Teacher's
Multi_ResNet (timm-style, with heads `bottleneck{i}_1` and `middle_fc{i}`);
torchvision's own ResNets through `torchvision()`. The converter's tests and
kdjax.bench's PyTorch reference use them; training never imports torch.
"""
import sys
import types

import torch
from torch import nn
import torch.nn.functional as F


def _conv_bn(cin, cout, kernel, stride, padding):
  seq = nn.Sequential()
  seq.add_module('conv', nn.Conv2d(cin, cout, kernel, stride, padding, bias=False))
  seq.add_module('bn', nn.BatchNorm2d(cout))
  return seq


class RepVGGBlock(nn.Module):
  """chenyaofo's block: three branches, or with `deploy` their fused conv `rbr_reparam`."""

  def __init__(self, cin, cout, stride, deploy=False):
    super().__init__()
    if deploy:
      self.rbr_reparam = nn.Conv2d(cin, cout, 3, stride, 1, bias=True)
      return
    self.rbr_identity = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
    self.rbr_dense = _conv_bn(cin, cout, 3, stride, 1)
    self.rbr_1x1 = _conv_bn(cin, cout, 1, stride, 0)

  def forward(self, x):
    if hasattr(self, 'rbr_reparam'):
      return F.relu(self.rbr_reparam(x))
    identity = 0 if self.rbr_identity is None else self.rbr_identity(x)
    return F.relu(self.rbr_dense(x) + self.rbr_1x1(x) + identity)


class RepVGG(nn.Module):
  """cifar100_repvgg_a0: stage0 + stages of 2/4/14/1 blocks, widths 48/48/96/192/1280."""

  def __init__(self, num_classes=100, num_blocks=(2, 4, 14, 1), widths=(48, 48, 96, 192, 1280),
               deploy=False):
    super().__init__()
    self.stage0 = RepVGGBlock(3, widths[0], 1, deploy)
    cin = widths[0]
    for i, (n, width) in enumerate(zip(num_blocks, widths[1:]), 1):
      blocks = []
      for j in range(n):
        blocks.append(RepVGGBlock(cin, width, 2 if i > 1 and j == 0 else 1, deploy))
        cin = width
      setattr(self, f'stage{i}', nn.Sequential(*blocks))
    self.gap = nn.AdaptiveAvgPool2d(1)
    self.linear = nn.Linear(widths[-1], num_classes)
    for m in self.modules():
      # Scaled so the signal neither dies nor explodes through 22 three-branch
      # blocks with fixed BN statistics: logits then differ between inputs.
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_in', nonlinearity='relu')
        m.weight.data *= 0.6

  def features(self, x):
    for i in range(5):
      x = getattr(self, f'stage{i}')(x)
    return self.gap(x).flatten(1)

  def forward(self, x):
    return self.linear(self.features(x))


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin, planes, stride, shortcut_name):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.shortcut_name = shortcut_name
    setattr(self, shortcut_name, _projection(cin, planes, stride))

  def forward(self, x):
    out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(out + getattr(self, self.shortcut_name)(x))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, planes, stride, shortcut_name):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.shortcut_name = shortcut_name
    setattr(self, shortcut_name, _projection(cin, planes * 4, stride))

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = F.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return F.relu(out + getattr(self, self.shortcut_name)(x))


def _projection(cin, cout, stride):
  if stride == 1 and cin == cout:
    return nn.Sequential()
  return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def _head_bottleneck(cin, features, stride):
  """Be Your Own Teacher's branchBottleNeck (the study's MiddleClassifier): 1x1
  conv, k x k stride-k conv, 1x1 conv, each with a bias, BN and ReLU."""
  middle = features // 4
  return nn.Sequential(
      nn.Conv2d(cin, middle, 1), nn.BatchNorm2d(middle), nn.ReLU(),
      nn.Conv2d(middle, middle, stride, stride), nn.BatchNorm2d(middle), nn.ReLU(),
      nn.Conv2d(middle, features, 1), nn.BatchNorm2d(features), nn.ReLU())


class IntermediateHead(nn.Module):
  """kdjax.models.layers.IntermediateHead: the bottleneck, pooling, a classifier."""

  def __init__(self, cin, features, stride, num_classes):
    super().__init__()
    self.body = _head_bottleneck(cin, features, stride)
    self.classifier = nn.Linear(features, num_classes)

  def forward(self, x):
    feature = self.body(x).mean((2, 3))
    return feature, self.classifier(feature)


class ResNet(nn.Module):
  """CIFAR ResNet: 3x3 stride-1 stem, no max-pool. layout 'repdistiller' names
  the shortcut `shortcut` and the classifier `linear`; 'timm' names them
  `downsample` and `fc`; 'byot' is timm's with Be Your Own Teacher's heads
  (`bottleneck{i}_1`, `middle_fc{i}`, and `downsample{i}_1`, which its forward
  never uses). With `heads`, forward_with_heads also returns every stage but
  the last's head (feature, logits)."""

  def __init__(self, block, num_blocks, num_classes=100, layout='repdistiller',
               heads=False, width=64):
    super().__init__()
    shortcut, classifier = (('shortcut', 'linear') if layout == 'repdistiller'
                            else ('downsample', 'fc'))
    self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    cin = width
    for i, n in enumerate(num_blocks):
      planes = width * 2**i
      blocks = []
      for j in range(n):
        blocks.append(block(cin, planes, 2 if i > 0 and j == 0 else 1, shortcut))
        cin = planes * block.expansion
      setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.classifier_name = classifier
    setattr(self, classifier, nn.Linear(cin, num_classes))
    self.layout = layout
    last = len(num_blocks) - 1
    stage_widths = [width * 2**i * block.expansion for i in range(last)]
    self.num_heads = last if heads or layout == 'byot' else 0
    if layout == 'byot':
      for i, stage_width in enumerate(stage_widths, 1):
        stride = 2**(last - i + 1)
        setattr(self, f'downsample{i}_1', nn.Sequential(
            nn.Conv2d(stage_width, cin, 1, stride, bias=False), nn.BatchNorm2d(cin)))
        setattr(self, f'bottleneck{i}_1', _head_bottleneck(stage_width, cin, stride))
        setattr(self, f'middle_fc{i}', nn.Linear(cin, num_classes))
    else:
      self.heads = nn.ModuleList([
          IntermediateHead(stage_width, cin, 2**(last - i), num_classes)
          for i, stage_width in enumerate(stage_widths)] if heads else [])
    for m in self.modules():  # the reference projects' init
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

  def _head(self, i, x):
    if self.layout != 'byot':
      return self.heads[i - 1](x)
    feature = getattr(self, f'bottleneck{i}_1')(x).mean((2, 3))
    return feature, getattr(self, f'middle_fc{i}')(feature)

  def features(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    for i in range(1, 5):
      x = getattr(self, f'layer{i}')(x)
    return self.avgpool(x).flatten(1)

  def forward(self, x):
    return getattr(self, self.classifier_name)(self.features(x))

  def forward_with_heads(self, x):
    """(final feature, final logits, [(head feature, head logits), ...])."""
    x = F.relu(self.bn1(self.conv1(x)))
    heads = []
    for i in range(1, 5):
      x = getattr(self, f'layer{i}')(x)
      if i <= self.num_heads:
        heads.append(self._head(i, x))
    feature = self.avgpool(x).flatten(1)
    return feature, getattr(self, self.classifier_name)(feature), heads


def build(arch, layout='repdistiller', num_classes=100, heads=False, width=64):
  """`width` as kdjax's models take it: a ResNet's first stage, RepVGG-A0's base (64)."""
  if arch == 'repvgg_a0':
    return RepVGG(num_classes, widths=tuple(int(m * width) for m in (0.75, 0.75, 1.5, 3, 20)))
  block, sizes = {'resnet18': (BasicBlock, (2, 2, 2, 2)),
                  'resnet50': (Bottleneck, (3, 4, 6, 3))}[arch]
  return ResNet(block, sizes, num_classes, layout, heads, width)


def torchvision():
  """The torchvision package. Its wheel on PyPI is a CUDA build: beside a CPU
  torch only its operator registrations fail, which its models, transforms
  and datasets (pure Python) never need, so they are skipped."""
  sys.modules.setdefault('torchvision._meta_registrations',
                         types.ModuleType('torchvision._meta_registrations'))
  import torchvision as package  # pylint: disable=g-import-not-at-top
  return package


def randomize_batchnorm(model, seed=0):
  """Non-trivial BN parameters and running statistics, as a trained net has."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
        m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
        m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
        m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        m.num_batches_tracked.fill_(1000)
  return model.eval()


class StudyBlock(nn.Module):
  """The study's src/cifar_resnet.py BasicBlock / BottleNeck: `residual_function`
  (conv, BN, ReLU, ... as one nn.Sequential) and `shortcut`."""

  def __init__(self, cin, planes, stride, expansion):
    super().__init__()
    if expansion == 1:
      layers = [nn.Conv2d(cin, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes),
                nn.ReLU(inplace=True), nn.Conv2d(planes, planes, 3, 1, 1, bias=False),
                nn.BatchNorm2d(planes)]
    else:
      layers = [nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes),
                nn.ReLU(inplace=True), nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
                nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.Conv2d(planes, planes * expansion, 1, bias=False),
                nn.BatchNorm2d(planes * expansion)]
    self.residual_function = nn.Sequential(*layers)
    self.shortcut = _projection(cin, planes * expansion, stride)

  def forward(self, x):
    return F.relu(self.residual_function(x) + self.shortcut(x))


class StudyMiddleClassifier(nn.Module):
  """The study's MiddleClassifier: `kd_bottleneck`, pooling, `middle_fc`."""

  def __init__(self, cin, features, stride, num_classes):
    super().__init__()
    self.kd_bottleneck = _head_bottleneck(cin, features, stride)
    self.middle_fc = nn.Linear(features, num_classes)

  def forward(self, x):
    feature = self.kd_bottleneck(x).mean((2, 3))
    return feature, self.middle_fc(feature)


class StudyResNet(nn.Module):
  """The study's src/cifar_resnet.py ResNet (and with `heads` its MultiResNet:
  `middle_classfier_1..3`) with the sizes kdjax's students may take: `width`
  (the study's 64), `stage_sizes`, `in_channels` (the study's 3) and the class
  count. forward returns the logits; forward_with_heads also each head's
  (feature, logits)."""

  def __init__(self, stage_sizes=(2, 2, 2, 2), num_classes=100, width=64, in_channels=3,
               heads=False, expansion=1):
    super().__init__()
    self.conv1 = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                               nn.BatchNorm2d(width), nn.ReLU(inplace=True))
    cin = width
    for i, n in enumerate(stage_sizes):
      blocks = []
      for j in range(n):
        blocks.append(StudyBlock(cin, width * 2**i, 2 if i > 0 and j == 0 else 1, expansion))
        cin = width * 2**i * expansion
      setattr(self, f'conv{i + 2}_x', nn.Sequential(*blocks))
    last = len(stage_sizes) - 1
    self.num_stages, self.num_heads = len(stage_sizes), last if heads else 0
    for i in range(1, self.num_heads + 1):
      setattr(self, f'middle_classfier_{i}', StudyMiddleClassifier(
          width * 2**(i - 1) * expansion, cin, 2**(last - i + 1), num_classes))
    self.avg_pool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(cin, num_classes)

  def forward_with_heads(self, x):
    """(final logits, [(head feature, head logits), ...])."""
    x = self.conv1(x)
    heads = []
    for i in range(1, self.num_stages + 1):
      x = getattr(self, f'conv{i + 1}_x')(x)
      if i <= self.num_heads:
        heads.append(getattr(self, f'middle_classfier_{i}')(x))
    return self.fc(self.avg_pool(x).flatten(1)), heads

  def forward(self, x):
    return self.forward_with_heads(x)[0]
