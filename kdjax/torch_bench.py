"""kdjax.bench's PyTorch reference: each method's train step in eager PyTorch.

The same ResNet18 (with Be Your Own Teacher heads for self-distillation), batch,
losses, mixup and SGD step as kdjax's, on a batch already in device memory.
kdjax's step also crops and flips the batch; a PyTorch pipeline does that in
its DataLoader workers, so the reference leaves it out. A RepVGG teacher runs
fused, as kdjax's does.
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from kdjax import build as build_lib
from kdjax import methods
from kdjax import teachers
from kdjax import timing
from kdjax import torch_models


def _fused_conv(branch):
  """(kernel, bias) of a conv -> BN branch in eval mode."""
  conv, bn = branch.conv, branch.bn
  scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
  return conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale


def fuse_repvgg(model: torch_models.RepVGG) -> nn.Module:
  """RepVGG in inference form: each block's three branches as one 3x3 conv."""
  for stage in range(5):
    blocks = getattr(model, f'stage{stage}')
    for index, block in (enumerate(blocks) if stage else [(None, blocks)]):
      kernel, bias = _fused_conv(block.rbr_dense)
      kernel_1x1, bias_1x1 = _fused_conv(block.rbr_1x1)
      kernel = kernel + F.pad(kernel_1x1, (1, 1, 1, 1))
      bias = bias + bias_1x1
      if block.rbr_identity is not None:
        bn = block.rbr_identity
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        identity = torch.zeros_like(kernel)
        identity[range(len(scale)), range(len(scale)), 1, 1] = scale
        kernel, bias = kernel + identity, bias + bn.bias - bn.running_mean * scale
      conv = block.rbr_dense.conv
      fused = nn.Conv2d(conv.in_channels, conv.out_channels, 3, conv.stride, 1)
      with torch.no_grad():
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
      fused = nn.Sequential(fused, nn.ReLU())
      if index is None:
        setattr(model, f'stage{stage}', fused)
      else:
        blocks[index] = fused
  return model


def _kl(student, teacher, temperature):
  return temperature**2 * F.kl_div(F.log_softmax(student / temperature, -1),
                                   F.log_softmax(teacher / temperature, -1),
                                   log_target=True, reduction='batchmean')


REFERENCE_TERMS = frozenset({'offline', 'self'})  # the terms make_step computes


def make_step(config, terms, teacher_name, batch_size, device, channels_last, dtype):
  """(a function running one train step of `config`'s method (its `terms`), the
  student it trains)."""
  student = torch_models.build('resnet18', heads='self' in terms,
                               width=config.width).to(device).train()
  teacher = None
  if teacher_name:
    teacher = torch_models.build(teacher_name, width=config.width).eval()
    if teacher_name == 'repvgg_a0':
      teacher = fuse_repvgg(teacher)
    teacher = teacher.to(device)
  generator = torch.Generator().manual_seed(0)
  images = torch.rand(batch_size, 3, 32, 32, generator=generator).to(device)
  labels = torch.randint(0, 100, (batch_size,), generator=generator).to(device)
  if channels_last:
    student = student.to(memory_format=torch.channels_last)
    teacher = teacher and teacher.to(memory_format=torch.channels_last)
    images = images.to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=config.momentum,
                              weight_decay=config.weight_decay)
  rng = np.random.default_rng(0)
  autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=dtype == 'bfloat16')
  w, w_self = config.kd_weight, config.self_kd_weight
  kd_scale = 1 / 100 if config.kd_reduction == 'mean' else 1  # 100 classes
  feature_scale = batch_size if config.self_feature_reduction == 'sum' else 1

  def step():
    lam = rng.beta(config.mixup_alpha, config.mixup_alpha) if config.mixup_alpha else 1.0
    partner = torch.randperm(batch_size, device=device)  # the study's mixup_data
    pixels = lam * images + (1 - lam) * images[partner]

    def mixed_ce(logits):  # the study's mixup_criterion
      return lam * F.cross_entropy(logits, labels) + (1 - lam) * F.cross_entropy(
          logits, labels[partner])

    with autocast:
      feature, logits, heads = student.forward_with_heads(pixels)
      loss = (1 - w if 'offline' in terms else 1 - w_self if 'self' in terms else 1
              ) * mixed_ce(logits)
      if teacher is not None:
        with torch.no_grad():
          teacher_logits = teacher(pixels)
        loss = loss + w * kd_scale * _kl(logits, teacher_logits, config.kd_temperature)
      for head_feature, head_logits in heads:
        head_ce = (F.cross_entropy(head_logits, labels) if config.head_labels == 'own'
                   else mixed_ce(head_logits))
        loss = loss + (
            (1 - w_self) * head_ce
            + w_self * _kl(head_logits, logits.detach(), config.self_kd_temperature)
            + config.self_feature_weight * feature_scale
            * (head_feature - feature.detach()).pow(2).sum(-1).mean())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
  return step, student


def time_step(step, device, warmup: int, steps: int) -> float:
  """Median seconds of `steps` calls of `step` after `warmup` more."""
  def wait(_):
    if device.type == 'cuda':
      torch.cuda.synchronize()
  return timing.median_seconds(step, warmup, steps, wait)


def reference_times(configs, batch_size: int, warmup: int, steps: int):
  """{'<spec>/eager_step_s', '<spec>/channels_last_step_s', ...} of each config's
  method (`configs` by spec) in its dtype on this machine's accelerator if
  torch sees one."""
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  result = {'torch_version': torch.__version__, 'device': str(device),
            'threads': torch.get_num_threads()}
  for spec, config in configs.items():
    terms = methods.get_method(config.method).terms
    if terms - REFERENCE_TERMS:
      result[f'{spec}/skipped'] = (f'no PyTorch reference step for '
                                   f'{sorted(terms - REFERENCE_TERMS)}')
      continue
    teacher = teachers.directory_name(config.teacher) if config.teacher else None
    for layout, channels_last in (('eager', False), ('channels_last', True)):
      step, _ = make_step(config, terms, teacher, batch_size, device, channels_last,
                          build_lib.compute_dtype(config.dtype))
      result[f'{spec}/{layout}_step_s'] = time_step(step, device, warmup, steps)
  return result
