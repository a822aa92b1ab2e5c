"""PyTorch checkpoints -> kdjax teacher directories.

  python -m kdjax.convert --arch repvgg_a0 --src cifar100_repvgg_a0-2df1edd0.pt \\
      --out teachers/repvgg_a0

`torch_to_flax` maps a state_dict (key -> numpy array) onto the Flax variables of
`kdjax.models.get_model(arch)`, detecting the key layout:
  repvgg_a0          chenyaofo/pytorch-cifar-models (stage0.rbr_dense.conv.weight, ..., linear)
  resnet18/resnet50  RepDistiller / mdistiller CIFAR ResNets (layerX.Y.shortcut.*, linear),
                     timm-style ones (layerX.Y.downsample.*, fc), or Be Your Own
                     Teacher's Multi_ResNet (luanyunteng/pytorch-be-your-own-teacher,
                     which the study's code also loads: the timm-style body plus
                     bottleneck{i}_1.*, middle_fc{i}.*), converted with its
                     intermediate heads
  resnet18/34/50     also the study's src/cifar_resnet.py (conv1.0, conv2_x.0.
                     residual_function.0, ..., fc; MultiResNet's middle_classfier_{i}),
                     at any width and blocks per stage: what kdjax.export writes
Every Flax variable must come from exactly one key with the right shape, and
every key must be used (num_batches_tracked and the keys a layout's model never
reads aside): anything else is an error naming the keys. torch is imported only
to read the file.
"""
import hashlib
import os
import re
from typing import Any, Dict, Mapping, Optional, Tuple

from absl import app
from absl import flags
from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np

from kdjax import checkpoint
from kdjax import data
from kdjax import errors
from kdjax import models
from kdjax import study
from kdjax import workdir as workdir_lib

# The input (height, width, channels) of every checkpoint kdjax converts: CIFAR's.
CIFAR_SHAPE = (32, 32, 3)
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
}
# Multi_ResNet defines downsample{i}_1 (a 1x1 conv + BN per head) but its
# forward never calls it: those keys hold nothing the model computes with.
_UNUSED = {'byot': re.compile(r'downsample\d+_1\.')}
# BYOT's branchBottleNeck is an nn.Sequential: conv, BN, ReLU, three times.
_BYOT_HEAD = {'conv1': '0', 'bn1': '1', 'conv2': '3', 'bn2': '4', 'conv3': '6', 'bn3': '7'}
PARAM_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias',
                'mean': 'running_mean', 'var': 'running_var'}


class ConversionError(errors.UserError, ValueError):
  """A state_dict that does not match the architecture, naming the keys."""


def detect_layout(arch: str, keys) -> str:
  keys = set(keys)
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
      return 'timm'
  else:
    raise ConversionError(f'No converter for {arch!r}; known: repvgg_a0, resnet18, resnet34, '
                          'resnet50.')
  raise ConversionError(
      f'Cannot tell the key layout of this {arch} state_dict (first keys: '
      f'{sorted(keys)[:5]}); expected the layout of '
      f'{"chenyaofo/pytorch-cifar-models" if arch == "repvgg_a0" else "RepDistiller (linear), timm (fc), Be Your Own Teacher (bottleneck1_1, middle_fc1) or the study (conv2_x)"}.')


# The study's src/cifar_resnet.py: a block's residual_function is one
# nn.Sequential (conv, BN, ReLU, ...), a head's kd_bottleneck another.
_STUDY_SEQUENCE = {'conv1': '0', 'bn1': '1', 'conv2': '3', 'bn2': '4', 'conv3': '6', 'bn3': '7'}
_STUDY_STAGE = re.compile(r'conv(\d+)_x\.(\d+)\.')


def model_kwargs(layout: str, keys=()) -> Dict[str, Any]:
  """The kdjax constructor arguments of a layout's model: Multi_ResNet has
  heads; the study's layout also tells its width and blocks per stage from its
  `keys` and shapes (a state_dict), which kdjax exports at any size."""
  if layout == 'byot':
    return {'heads': True}
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


def input_channels(arch: str, layout: str, state_dict) -> int:
  """The channel count of the images the checkpoint's model reads."""
  first_conv = 'stage0_block1/rbr_dense_conv' if arch == 'repvgg_a0' else 'stem_conv'
  stem = f'{module_key(arch, layout, first_conv)}.weight'
  return int(np.shape(state_dict[stem])[1]) if stem in state_dict else CIFAR_SHAPE[-1]


def module_key(arch, layout, module):
  """The PyTorch module path of a Flax module path."""
  if module == 'classifier':
    return 'fc' if layout in ('timm', 'byot', 'study') else 'linear'
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


def _to_flax(value: np.ndarray, name: str) -> np.ndarray:
  if name == 'kernel' and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if name == 'kernel' and value.ndim == 2:
    return value.T  # (out, in) -> (in, out)
  return value


def to_torch(value: np.ndarray, name: str) -> np.ndarray:
  """_to_flax's inverse: a Flax variable as PyTorch holds it."""
  if name == 'kernel' and value.ndim == 4:
    return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
  if name == 'kernel' and value.ndim == 2:
    return value.T
  return value


def _expected_variables(arch, num_classes, kwargs, channels):
  model = models.get_model(arch, num_classes=num_classes, **kwargs)
  return jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, *CIFAR_SHAPE[:2], channels)), train=False))


def _num_classes(arch, layout, state_dict):
  key = f'{module_key(arch, layout, "classifier")}.bias'
  if key not in state_dict:
    raise ConversionError(f'Missing key {key!r} (the classifier) in the {arch} state_dict.')
  return int(np.shape(state_dict[key])[0])


def torch_to_flax(arch: str, state_dict: Mapping[str, Any]) -> Dict[str, Any]:
  """{'params', 'batch_stats'} of kdjax's `arch` from a PyTorch state_dict
  (key -> numpy array), whatever of the supported layouts it is in."""
  layout = detect_layout(arch, state_dict)
  num_classes = _num_classes(arch, layout, state_dict)
  expected = flax.traverse_util.flatten_dict(flax.core.unfreeze(_expected_variables(
      arch, num_classes, model_kwargs(layout, state_dict),
      input_channels(arch, layout, state_dict))), sep='/')
  converted, missing, wrong_shape, used = {}, [], [], set()
  for path, target in expected.items():
    collection, module, name = re.fullmatch(r'(\w+)/(.+)/(\w+)', path).groups()
    key = f'{module_key(arch, layout, module)}.{PARAM_NAMES[name]}'
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
  unused = _UNUSED.get(layout)
  ignored = sorted(k for k in state_dict if unused and unused.match(k))
  if ignored:
    logging.info('Dropped %d keys that %s\'s model never reads: %s', len(ignored), layout,
                 ', '.join(ignored))
  unexpected = sorted(k for k in state_dict if k not in used and k not in ignored
                      and not k.endswith('num_batches_tracked'))
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
  try:
    loaded = torch.load(path, map_location='cpu', weights_only=True)
  except (OSError, RuntimeError, ValueError) as e:  # missing, unreadable, not a checkpoint
    raise ConversionError(f'Cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: '
                          f'{e}).') from e
  found = ''
  for container in ('model', 'state_dict', 'net'):
    if isinstance(loaded, dict) and isinstance(loaded.get(container), dict):
      loaded, found = loaded[container], container
      break
  state_dict = {k[len('module.'):] if k.startswith('module.') else k: v.numpy()
                for k, v in loaded.items() if hasattr(v, 'numpy')}
  return state_dict, found


def write_teacher(out: str, arch: str, variables, mean, std, kwargs=None,
                  image_shape=CIFAR_SHAPE) -> None:
  """A teacher directory: model.json (the model with constructor `kwargs`, for
  images of `image_shape`) and the variables as an orbax checkpoint."""
  if workdir_lib.has_model_file(out):
    raise errors.TeacherError(f'{out} already holds a teacher; remove it or pick another '
                                '--out.')
  os.makedirs(out, exist_ok=True)
  num_classes = int(variables['params']['classifier']['bias'].shape[0])
  workdir_lib.write_model_file(out, arch, num_classes, kwargs or {}, mean, std, image_shape)
  checkpoint.save_variables(out, variables)


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _download(teacher: study.Teacher, cache_dir: str) -> str:
  """The path of `teacher`'s file, downloaded into `cache_dir` by tensorflow-
  datasets' download manager (progress bar; a finished download is reused)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    data.probe(teacher.url)  # an offline machine is told at once
    return os.fspath(tfds.download.DownloadManager(download_dir=cache_dir).download(
        teacher.url))
  except Exception as e:  # pylint: disable=broad-except  (requests and TFDS raise many kinds)
    raise errors.TeacherError(
        f'Could not download {teacher.url} ({type(e).__name__}: {e}). Without internet, '
        f'download {teacher.filename} on a connected machine, copy it here and run '
        f'`python -m kdjax.teachers fetch {teacher.name} --file={teacher.filename}`.') from e


def fetch(teacher: study.Teacher, out: str, file: Optional[str] = None,
          cache_dir: Optional[str] = None) -> str:
  """Downloads (or takes `file`), checks, converts and writes `teacher` into the
  teacher directory `out`; returns what it did. A file whose sha256 does not
  start with the published prefix is refused (and a downloaded one deleted, so
  the next fetch downloads it again)."""
  if workdir_lib.has_model_file(out):
    return f'{out} already holds a teacher; remove it to fetch {teacher.name} again.'
  path = file or _download(teacher, cache_dir or os.path.join(os.path.dirname(
      os.path.normpath(out)), 'downloads'))
  digest = sha256(path)
  if teacher.sha256_prefix and not digest.startswith(teacher.sha256_prefix):
    if not file:  # TFDS would reuse the cached file: remove it and its record
      for stale in (path, f'{path}.INFO'):
        if os.path.exists(stale):
          os.remove(stale)
    raise errors.TeacherError(
        f'{path} has sha256 {digest}, but {teacher.filename} is published with one that '
        f'starts {teacher.sha256_prefix}: the file is damaged or not the teacher. '
        + ('Fetch it again.' if not file else f'Download it again from {teacher.url}.'))
  state_dict, _ = read_state_dict(path)
  layout = detect_layout(teacher.arch, state_dict)
  variables = torch_to_flax(teacher.arch, state_dict)
  mean, std = NORMALIZATION[layout]
  write_teacher(out, teacher.arch, variables, mean, std, model_kwargs(layout))
  check = (f'sha256 {digest} starts with the published {teacher.sha256_prefix}'
           if teacher.sha256_prefix else
           f'sha256 {digest} (its publisher gives no checksum; the conversion found '
           f'every {teacher.arch} weight in the {layout} layout)')
  return (f'Converted {path} ({check}) into {out}. Check its accuracy: python -m '
          f'kdjax.evaluate --teacher={out} (the study reports {teacher.top1:.2f}%, '
          f'{teacher.source} {teacher.source_top1:.2f}%).')


FLAGS = flags.FLAGS


def main(argv):
  del argv
  errors.exit_on_user_error(_convert_file)


def _convert_file():
  """The command line's conversion of --src into --out."""
  state_dict, container = read_state_dict(FLAGS.src)
  layout = detect_layout(FLAGS.arch, state_dict)
  variables = torch_to_flax(FLAGS.arch, state_dict)
  mean, std = NORMALIZATION[layout]
  if FLAGS.mean:
    mean, std = [float(m) for m in FLAGS.mean], [float(s) for s in FLAGS.std]
  write_teacher(FLAGS.out, FLAGS.arch, variables, mean, std,
                model_kwargs(layout, state_dict),
                (*CIFAR_SHAPE[:2], input_channels(FLAGS.arch, layout, state_dict)))
  print(f'Converted {FLAGS.src} ({FLAGS.arch}, {layout} layout'
        f'{f", under {container!r}" if container else ""}) to {FLAGS.out} '
        f'with mean {tuple(mean)} and std {tuple(std)}.\n'
        f'Check it: python -m kdjax.evaluate --teacher={FLAGS.out}')


if __name__ == '__main__':
  flags.DEFINE_enum('arch', None, ['repvgg_a0', 'resnet18', 'resnet34', 'resnet50'],
                    'Architecture.')
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
