"""PyTorch checkpoints -> kdjax teacher directories.

  python -m kdjax.convert --arch repvgg_a0 --src cifar100_repvgg_a0-2df1edd0.pt \\
      --out teachers/repvgg_a0

`torch_to_flax` maps a state_dict (key -> numpy array) onto the Flax variables of
`kdjax.models.get_model(arch)`, detecting its key layout (`layouts`: the CIFAR
projects', the study's and torchvision's). Every Flax variable must come from
exactly one key with the right shape, and every key must be used
(num_batches_tracked and the keys a layout's model never reads aside): anything
else is an error naming the keys. torch is imported only to read the file.
`convert_into` writes a teacher directory from a state_dict; `fetch` downloads,
checks and converts a published teacher.
"""
import os
import re
from typing import Any, Dict, Mapping, Tuple

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np

from kdjax import checkpoint
from kdjax import errors
from kdjax import models
from kdjax import workdir as workdir_lib
# The layouts' names that callers use, as kdjax.convert.<name>.
from kdjax.convert.layouts import (CIFAR_SHAPE, ConversionError, NORMALIZATION, PARAM_NAMES,
                                   detect_layout, image_shape, model_kwargs, module_key,
                                   to_torch)
from kdjax.convert import layouts


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
      image_shape(arch, layout, state_dict)[-1])), sep='/')
  converted, missing, wrong_shape, used = {}, [], [], set()
  for path, target in expected.items():
    collection, module, name = re.fullmatch(r'(\w+)/(.+)/(\w+)', path).groups()
    key = f'{module_key(arch, layout, module)}.{PARAM_NAMES[name]}'
    if key not in state_dict:
      missing.append(key)
      continue
    used.add(key)
    value = layouts.to_flax(np.asarray(state_dict[key], np.float32), name)
    if value.shape != target.shape:
      wrong_shape.append(f'{key}: {np.shape(state_dict[key])} does not fit {target.shape} '
                         f'(kdjax {collection}/{module}/{name})')
      continue
    converted[path] = value
  unused = layouts.UNUSED.get(layout)
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


def convert_into(arch: str, state_dict: Mapping[str, Any], out: str,
                 normalization=None) -> Tuple[str, Any, Any]:
  """Writes the teacher directory `out` from a state_dict of `arch`: its
  variables, its layout's model arguments and input shape, and its layout's
  normalization unless `normalization` ((mean, std)) is given. Returns
  (layout, mean, std)."""
  layout = detect_layout(arch, state_dict)
  variables = torch_to_flax(arch, state_dict)
  mean, std = normalization or NORMALIZATION[layout]
  write_teacher(out, arch, variables, mean, std, model_kwargs(layout, state_dict),
                image_shape(arch, layout, state_dict))
  return layout, mean, std


# After the names fetch reads from this package.
from kdjax.convert.fetch import fetch, sha256  # pylint: disable=g-import-not-at-top,wrong-import-position
