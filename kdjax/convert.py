"""PyTorch checkpoints -> kdjax teacher directories.

  python -m kdjax.convert --arch repvgg_a0 --src cifar100_repvgg_a0-2df1edd0.pt \\
      --out teachers/repvgg_a0

`torch_to_flax` maps a state_dict (key -> numpy array) onto the Flax variables of
`kdjax.models.get_model(arch)`, detecting the key layout:
  repvgg_a0          chenyaofo/pytorch-cifar-models (stage0.rbr_dense.conv.weight, ..., linear)
  resnet18/resnet50  RepDistiller / mdistiller CIFAR ResNets (layerX.Y.shortcut.*, linear)
                     or timm-style ones (layerX.Y.downsample.*, fc)
Every Flax variable must come from exactly one key with the right shape, and
every key must be used (num_batches_tracked aside): anything else is an error
naming the keys. torch is imported only to read the file.
"""
import os
import re
from typing import Any, Dict, Mapping, Tuple

from absl import app
from absl import flags
import flax
import jax
import jax.numpy as jnp
import numpy as np

from kdjax import checkpoint
from kdjax import models
from kdjax import teachers

# The input normalization each layout's teachers were trained with: chenyaofo's
# (image-classification-codebase conf/cifar100.conf) and RepDistiller's
# (dataset/cifar100.py, which mdistiller keeps). timm-layout CIFAR checkpoints
# have no single source; they get RepDistiller's, and --mean/--std override it.
NORMALIZATION = {
    'chenyaofo': ((0.5070, 0.4865, 0.4409), (0.2673, 0.2564, 0.2761)),
    'repdistiller': ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    'timm': ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
_PARAM_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
                'mean': 'running_mean', 'var': 'running_var'}


class ConversionError(ValueError):
  """A state_dict that does not match the architecture, naming the keys."""


def detect_layout(arch: str, keys) -> str:
  keys = set(keys)
  if arch == 'repvgg_a0':
    if 'stage0.rbr_dense.conv.weight' in keys:
      return 'chenyaofo'
  elif arch in ('resnet18', 'resnet50'):
    if 'linear.weight' in keys and 'fc.weight' not in keys:
      return 'repdistiller'
    if 'fc.weight' in keys and 'linear.weight' not in keys:
      return 'timm'
  else:
    raise ConversionError(f'No converter for {arch!r}; known: repvgg_a0, resnet18, resnet50.')
  raise ConversionError(
      f'Cannot tell the key layout of this {arch} state_dict (first keys: '
      f'{sorted(keys)[:5]}); expected the layout of '
      f'{"chenyaofo/pytorch-cifar-models" if arch == "repvgg_a0" else "RepDistiller (linear) or timm (fc)"}.')


def _module_key(arch, layout, module):
  """The PyTorch module path of a Flax module path."""
  if module == 'classifier':
    return 'fc' if layout == 'timm' else 'linear'
  if arch == 'repvgg_a0':
    stage, block, rest = re.fullmatch(r'stage(\d+)_block(\d+)/(.+)', module).groups()
    prefix = f'stage{stage}' if stage == '0' else f'stage{stage}.{int(block) - 1}'
    rest = {'rbr_dense_conv': 'rbr_dense.conv', 'rbr_dense_bn': 'rbr_dense.bn',
            'rbr_1x1_conv': 'rbr_1x1.conv', 'rbr_1x1_bn': 'rbr_1x1.bn'}.get(rest, rest)
    return f'{prefix}.{rest}'
  if module in ('stem_conv', 'stem_bn'):
    return {'stem_conv': 'conv1', 'stem_bn': 'bn1'}[module]
  stage, block, rest = re.fullmatch(r'stage(\d+)_block(\d+)/(.+)', module).groups()
  shortcut = 'downsample' if layout == 'timm' else 'shortcut'
  rest = {'shortcut_conv': f'{shortcut}.0', 'shortcut_bn': f'{shortcut}.1'}.get(rest, rest)
  return f'layer{stage}.{int(block) - 1}.{rest}'


def _to_flax(value: np.ndarray, name: str) -> np.ndarray:
  if name == 'kernel' and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if name == 'kernel' and value.ndim == 2:
    return value.T  # (out, in) -> (in, out)
  return value


def _expected_variables(arch, num_classes):
  model = models.get_model(arch, num_classes=num_classes)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                           jnp.zeros((1, 32, 32, 3)), train=False))


def _num_classes(arch, layout, state_dict):
  key = f'{_module_key(arch, layout, "classifier")}.bias'
  if key not in state_dict:
    raise ConversionError(f'Missing key {key!r} (the classifier) in the {arch} state_dict.')
  return int(np.shape(state_dict[key])[0])


def torch_to_flax(arch: str, state_dict: Mapping[str, Any]) -> Dict[str, Any]:
  """{'params', 'batch_stats'} of kdjax's `arch` from a PyTorch state_dict
  (key -> numpy array), whatever of the supported layouts it is in."""
  layout = detect_layout(arch, state_dict)
  num_classes = _num_classes(arch, layout, state_dict)
  expected = flax.traverse_util.flatten_dict(
      flax.core.unfreeze(_expected_variables(arch, num_classes)), sep='/')
  converted, missing, wrong_shape, used = {}, [], [], set()
  for path, target in expected.items():
    collection, module, name = re.fullmatch(r'(\w+)/(.+)/(\w+)', path).groups()
    key = f'{_module_key(arch, layout, module)}.{_PARAM_NAMES[name]}'
    if key not in state_dict:
      missing.append(key)
      continue
    used.add(key)
    value = _to_flax(np.asarray(state_dict[key], np.float32), name)
    if value.shape != target.shape:
      wrong_shape.append(f'{key}: {np.shape(state_dict[key])} does not fit {target.shape} '
                         f'(kdjax {collection}/{module}/{name})')
      continue
    converted[path] = value
  unexpected = sorted(k for k in state_dict
                      if k not in used and not k.endswith('num_batches_tracked'))
  problems = []
  if missing:
    problems.append(f'missing keys: {missing}')
  if unexpected:
    problems.append(f'unexpected keys: {unexpected}')
  if wrong_shape:
    problems.append(f'wrong shapes: {wrong_shape}')
  if problems:
    raise ConversionError(f'This state_dict is not a {arch} in the {layout} layout: '
                          + '; '.join(problems))
  return flax.traverse_util.unflatten_dict(converted, sep='/')


def read_state_dict(path: str) -> Tuple[Dict[str, np.ndarray], str]:
  """A checkpoint file's state_dict as numpy arrays, unwrapping the usual
  containers ('model', 'state_dict', 'net') and DataParallel's 'module.' prefix."""
  import torch  # pylint: disable=g-import-not-at-top  (only the converter needs torch)
  loaded = torch.load(path, map_location='cpu', weights_only=True)
  found = ''
  for container in ('model', 'state_dict', 'net'):
    if isinstance(loaded, dict) and isinstance(loaded.get(container), dict):
      loaded, found = loaded[container], container
      break
  state_dict = {k[len('module.'):] if k.startswith('module.') else k: v.numpy()
                for k, v in loaded.items() if hasattr(v, 'numpy')}
  return state_dict, found


def write_teacher(out: str, arch: str, variables, mean, std) -> None:
  """A teacher directory: model.json and the variables as an orbax checkpoint."""
  if teachers.is_teacher(out):
    raise FileExistsError(f'{out} already holds a teacher; remove it or pick another --out.')
  os.makedirs(out, exist_ok=True)
  num_classes = int(variables['params']['classifier']['bias'].shape[0])
  teachers.write_model_file(out, arch, num_classes, {}, mean, std)
  checkpoint.save_variables(out, variables)


FLAGS = flags.FLAGS


def main(argv):
  del argv
  state_dict, container = read_state_dict(FLAGS.src)
  layout = detect_layout(FLAGS.arch, state_dict)
  variables = torch_to_flax(FLAGS.arch, state_dict)
  mean, std = NORMALIZATION[layout]
  if FLAGS.mean:
    mean, std = [float(m) for m in FLAGS.mean], [float(s) for s in FLAGS.std]
  write_teacher(FLAGS.out, FLAGS.arch, variables, mean, std)
  print(f'Converted {FLAGS.src} ({FLAGS.arch}, {layout} layout'
        f'{f", under {container!r}" if container else ""}) to {FLAGS.out} '
        f'with mean {tuple(mean)} and std {tuple(std)}.\n'
        f'Check it: python -m kdjax.evaluate --teacher={FLAGS.out}')


if __name__ == '__main__':
  flags.DEFINE_enum('arch', None, ['repvgg_a0', 'resnet18', 'resnet50'], 'Architecture.')
  flags.DEFINE_string('src', None, 'PyTorch checkpoint (.pt / .pth).')
  flags.DEFINE_string('out', None, 'Teacher directory to write, e.g. teachers/repvgg_a0.')
  flags.DEFINE_list('mean', None, 'Input mean the teacher was trained with '
                    '(default: its source project\'s CIFAR-100 mean).')
  flags.DEFINE_list('std', None, 'Input std, given with --mean.')
  flags.mark_flags_as_required(['arch', 'src', 'out'])
  flags.register_multi_flags_validator(
      ['mean', 'std'], lambda f: (f['mean'] is None) == (f['std'] is None),
      '--mean and --std go together.')
  app.run(main)
