"""A trained student out of kdjax: a PyTorch state_dict or a plain Flax directory.

  python -m kdjax.export --workdir=W --to=torch --output=student.pt \\
      [--checkpoint=best|last|STEP] [--heads] [--member=N] [--unfused] [--overwrite]
  python -m kdjax.export --workdir=W --to=flax --output=DIR ...

The student alone leaves: its parameters and BatchNorm statistics, without
optimizer state, a method's learned parts or memories, or (without --heads)
its intermediate heads. `--to=torch` writes a state_dict (torch.save) in the
layout of the architecture's reference PyTorch model: CIFAR-stem ResNets in the
study's src/cifar_resnet.py (with --heads its MultiResNet), at the student's
width and blocks per stage, which kdjax.torch_models.StudyResNet builds;
ImageNet-stem ResNets in torchvision's (torchvision.models.resnet18/34/50, at
width 64, without heads); RepVGG-A0 in
chenyaofo/pytorch-cifar-models' (fused into its deploy form unless
--unfused). kdjax.convert reads both back. `--to=flax` writes a directory of
model.json and an orbax checkpoint of {params, batch_stats}: a teacher
directory, which kdjax.models.get_model rebuilds (docs/teachers.md).
"""
import collections
import json
import os
import re
import shutil
from typing import Any, Dict, Optional, Tuple

from absl import app
from absl import flags
import flax
import numpy as np

from kdjax import checkpoint
from kdjax import console
from kdjax import convert
from kdjax import errors
from kdjax import models
from kdjax import teachers
from kdjax import workdir as workdir_lib

# Each architecture's PyTorch layout (kdjax.convert.layouts' names); ImageNet-stem
# ResNets go to TORCHVISION.
LAYOUTS = {'resnet18': 'study', 'resnet34': 'study', 'resnet50': 'study',
           'repvgg_a0': 'chenyaofo'}
TORCHVISION = 'torchvision'
# torchvision's ResNets: their block counts, and the first stage's fixed width.
TORCHVISION_STAGES = {'resnet18': (2, 2, 2, 2), 'resnet34': (3, 4, 6, 3),
                      'resnet50': (3, 4, 6, 3)}
TORCHVISION_WIDTH = 64


def layout(name: str, kwargs) -> str:
  """The PyTorch layout model `name` with constructor `kwargs` exports in."""
  return TORCHVISION if kwargs.get('stem') == 'imagenet' else LAYOUTS[name]


class ExportError(errors.UserError, ValueError):
  """A workdir, checkpoint or output the export cannot use, with what to do."""


def _model_file(workdir: str) -> Dict[str, Any]:
  if not workdir_lib.path(workdir).is_dir():
    raise ExportError(f'No workdir at {workdir!r}; pass --workdir=DIR of a kdjax run.')
  for name in (workdir_lib.MODEL_FILE, workdir_lib.CONFIG_FILE):
    if not (workdir_lib.path(workdir) / name).exists():
      raise ExportError(f'{workdir} has no {name}: it is not a kdjax workdir (or it was '
                        'refused before it trained); pass one that trained.')
  return json.loads((workdir_lib.path(workdir) / workdir_lib.MODEL_FILE).read_text())


def _step(workdir: str, which: str) -> Tuple[int, str]:
  """(the checkpoint step `which` names, a note on it)."""
  if not (workdir_lib.path(workdir) / 'checkpoints').is_dir():
    steps = []
  else:
    manager = checkpoint.reader(workdir)
    steps = manager.all_steps()
  if not steps:
    raise ExportError(f'{workdir} holds no complete checkpoint yet: it is unfinished; '
                      'export once its first epoch has ended.')
  if which == 'last':
    return max(steps), 'the last checkpoint'
  if which == 'best':
    best = manager.best_step()
    return (best, 'the best checkpoint by test top-1') if best is not None else (
        max(steps), 'the last checkpoint (none has a test accuracy yet)')
  if not which.isdigit() or int(which) not in steps:
    raise ExportError(f'--checkpoint={which}: {workdir} holds the checkpoints of steps '
                      f'{sorted(steps)}; name one of them, best or last.')
  return int(which), f'the checkpoint of step {which}'


def _member(spec, member: Optional[int]):
  """(name, kwargs, variables path) of the exported model of a model file."""
  if spec['model'] != models.COHORT:
    if member:
      raise ExportError(f'--member={member}: this workdir trained one model; drop --member.')
    return spec['model'], teachers.tuples(spec['kwargs']), ()
  members = spec['kwargs']['members']
  if member is None or not 0 <= member < len(members):
    raise ExportError(f'This workdir trained a cohort of {[m[0] for m in members]}; pass '
                      f'--member=N (0 to {len(members) - 1}) to export one of them.')
  name, kwargs = members[member]
  return name, teachers.tuples(kwargs), (f'members_{member}',)


def _restore(workdir, step, spec, path):
  """The student's {params, batch_stats} at `step` (of the member at `path`)."""
  model = models.get_model(spec['model'], num_classes=spec['num_classes'],
                           **teachers.tuples(spec['kwargs']))
  variables = checkpoint.restore_variables(workdir, step,
                                           teachers.abstract_variables(model, spec))
  for key in path:
    variables = {c: v[key] for c, v in variables.items()}
  return variables


def _student(variables, kwargs, heads: bool):
  """Without the heads (unless `heads`) and FitNets' regressor (never)."""
  drop = {'hint_regressor'} | (set() if heads else {
      k for k in variables['params'] if k.startswith('head')})
  kwargs = {k: v for k, v in kwargs.items()
            if k not in ('hint_stage', 'hint_channels') and (heads or k != 'heads')}
  return {c: {k: v for k, v in tree.items() if k not in drop}
          for c, tree in variables.items()}, kwargs


def flax_to_torch(arch: str, variables, fused: bool = True,
                  kwargs=None) -> Dict[str, np.ndarray]:
  """A state_dict (key -> numpy array, num_batches_tracked included) of the
  variables of `arch` (constructor `kwargs`) in its layout (`layout`); RepVGG
  `fused` into its deploy form."""
  to = layout(arch, kwargs or {})
  if arch == 'repvgg_a0' and fused:
    _, variables = models.inference_form(arch, {}, variables)
  state_dict = collections.OrderedDict()
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables), sep='/')
  for path, value in flat.items():
    _, module, name = re.fullmatch(r'(\w+)/(.+)/(\w+)', path).groups()
    key = convert.module_key(arch, to, module)
    state_dict[f'{key}.{convert.PARAM_NAMES[name]}'] = convert.to_torch(
        np.asarray(value, np.float32), name)
    if name == 'var':  # every BatchNorm: PyTorch's counter, which eval mode never reads
      state_dict[f'{key}.num_batches_tracked'] = np.zeros((), np.int64)
  return state_dict


def _check_torchvision(name: str, kwargs, heads: bool):
  """Refuses what torchvision's ResNet cannot hold: heads, another width."""
  if heads:
    raise ExportError('--heads: torchvision\'s ResNets have no intermediate heads; export '
                      'them --to=flax, or drop --heads.')
  width = kwargs.get('width', TORCHVISION_WIDTH)
  if width != TORCHVISION_WIDTH:
    raise ExportError(f'This {name} has width {width}; torchvision\'s ResNets are '
                      f'{TORCHVISION_WIDTH} wide in their first stage. Export it --to=flax.')


def _check_output(output: str, overwrite: bool):
  if os.path.lexists(output) and not overwrite:
    raise ExportError(f'{output} exists; pass --overwrite to replace it, or another --output.')


def _clear(output: str):
  """Removes what --overwrite replaces, once everything else was checked."""
  if not os.path.lexists(output):
    return
  if os.path.isdir(output) and not os.path.islink(output):
    shutil.rmtree(output)
  else:
    os.remove(output)


def _progress(workdir: str) -> Tuple[int, int]:
  """(epochs the run completed, epochs it trains)."""
  config = json.loads((workdir_lib.path(workdir) / workdir_lib.CONFIG_FILE).read_text())
  records = workdir_lib.path(workdir) / 'metrics.jsonl'
  done = len(records.read_text().splitlines()) if records.exists() else 0
  return done, config['num_epochs']


def export(workdir: str, to: str, output: str, which: Optional[str] = None,
           heads: bool = False, member: Optional[int] = None, fused: bool = True,
           overwrite: bool = False) -> str:
  """Writes the student of `workdir` to `output` (`to`: 'torch' or 'flax') from
  checkpoint `which` (best, last or a step; default: the best of a finished
  run, the latest of one still training); returns what it did. Every refusal
  comes before anything is written."""
  _check_output(output, overwrite)
  spec = _model_file(workdir)
  name, kwargs, path = _member(spec, member)
  if to == 'torch' and name not in LAYOUTS:
    raise ExportError(f'{name} has no PyTorch layout to export to (kdjax has '
                      f'{sorted(LAYOUTS)}); export it --to=flax.')
  if heads and not kwargs.get('heads'):
    raise ExportError(f'--heads: the student of {workdir} has no intermediate heads; drop it.')
  if heads and to == 'torch' and name == 'resnet50':
    raise ExportError('--heads: the study\'s MultiResNet is a ResNet18 of basic blocks; '
                      'export resnet50\'s heads --to=flax, or drop --heads.')
  if to == 'torch' and name in LAYOUTS and layout(name, kwargs) == TORCHVISION:
    _check_torchvision(name, kwargs, heads)
  done, epochs = _progress(workdir)
  step, which_note = _step(workdir, which or ('best' if done >= epochs else 'last'))
  variables, kwargs = _student(_restore(workdir, step, spec, path), kwargs, heads)
  _clear(output)
  note = f' The run is still training ({done} of {epochs} epochs).' if done < epochs else ''
  shape = teachers.image_shape(spec)
  if to == 'flax':
    convert.write_teacher(output, name, variables, spec['mean'], spec['std'], kwargs, shape)
    return (f'Wrote {name} from {which_note} (step {step}) of {workdir} to {output}.{note} '
            f'Load it: kdjax.teachers.load({output!r}), or models.get_model({name!r}, '
            f'num_classes={spec["num_classes"]}, **{kwargs}) with its checkpoint.')
  import torch  # pylint: disable=g-import-not-at-top  (only --to=torch needs torch)
  state_dict = flax_to_torch(name, variables, fused, kwargs)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  torch.save(collections.OrderedDict((k, torch.from_numpy(np.asarray(v)))
                                     for k, v in state_dict.items()), output)
  return (f'Wrote {name} from {which_note} (step {step}) of {workdir} to {output}, '
          f'{layout(name, kwargs)} layout ({len(state_dict)} tensors; inputs normalized with '
          f'mean {tuple(spec["mean"])}, std {tuple(spec["std"])}).{note}\n'
          f'Load it: {torch_constructor(name, spec["num_classes"], kwargs, shape, fused)}'
          f'.load_state_dict(torch.load({output!r}))')


def torch_constructor(name: str, num_classes: int, kwargs, image_shape, fused=True) -> str:
  """The PyTorch call that builds the model an export of `name` loads into,
  with the sizes of kdjax's model (`kwargs` over its defaults)."""
  model = models.get_model(name, num_classes=num_classes, **kwargs)
  if layout(name, kwargs) == TORCHVISION:
    if tuple(model.stage_sizes) == TORCHVISION_STAGES[name]:
      return f'torchvision.models.{name}(num_classes={num_classes})'
    block = 'Bottleneck' if model.block_cls.expansion > 1 else 'BasicBlock'
    return (f'torchvision.models.resnet.ResNet(torchvision.models.resnet.{block}, '
            f'{list(model.stage_sizes)}, num_classes={num_classes})')
  if name == 'repvgg_a0':
    multipliers = [round(m * model.width / 64, 6) for m in (0.75, 0.75, 0.75, 2.5)]
    return (f'pytorch_cifar_models.repvgg.RepVGG(num_blocks={list(model.stage_sizes[1:])}, '
            f'num_classes={num_classes}, width_multiplier={multipliers}, deploy={fused})')
  return (f'kdjax.torch_models.StudyResNet(stage_sizes={tuple(model.stage_sizes)}, '
          f'num_classes={num_classes}, width={model.width}, in_channels={image_shape[-1]}, '
          f'heads={model.heads}, expansion={model.block_cls.expansion})')


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console.show_kdjax_lines()
  print(errors.exit_on_user_error(lambda: export(
      FLAGS.workdir, FLAGS.to, FLAGS.output, FLAGS.checkpoint, FLAGS.heads, FLAGS.member,
      not FLAGS.unfused, FLAGS.overwrite)))


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'The kdjax workdir to export.')
  flags.DEFINE_enum('to', None, ['torch', 'flax'], 'A PyTorch state_dict or a Flax directory.')
  flags.DEFINE_string('output', None, 'The file (torch) or directory (flax) to write.')
  flags.DEFINE_string('checkpoint', None, 'best (by test top-1), last, or a step; default: '
                      'the best of a finished run, the latest of one still training.')
  flags.DEFINE_bool('heads', False, 'Keep the intermediate heads (a self-distillation '
                    "student): the study's MultiResNet layout for torch.")
  flags.DEFINE_integer('member', None, 'Which student of a cohort (online) workdir: 0 is '
                       'config.model, then its peers.')
  flags.DEFINE_bool('unfused', False, "RepVGG in its training form (three branches) instead "
                    'of the fused deploy form.')
  flags.DEFINE_bool('overwrite', False, 'Replace an existing --output.')
  flags.mark_flags_as_required(['workdir', 'to', 'output'])
  app.run(main)
