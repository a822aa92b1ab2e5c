"""Test-split evaluation of a model, and of a teacher before 200 epochs are spent on it.

  python -m kdjax.evaluate --teacher=teachers/repvgg_a0   # or a kdjax workdir

`evaluate` runs a mapped eval step over the whole test split: the last batch is
padded and masked, so every example counts exactly once.
"""
import json
from typing import Any, Dict, Sequence, Tuple

from absl import app
from absl import flags
import jax
import numpy as np

from kdjax import data
from kdjax import errors
from kdjax import methods
from kdjax import steps
from kdjax import study
from kdjax import teachers
from kdjax import workdir as workdir_lib
from kdjax.data import feeds


def evaluate(eval_step, variables, feed, num_examples: int, global_batch: int,
             devices: Sequence[Any]) -> Dict[str, float]:
  """Top-1/top-5 (%, and what the method adds) and loss on all `num_examples` of
  `feed`'s test split (kdjax.data.feeds) for `variables` replicated on this
  process's devices, by `eval_step` mapped over `devices` (with several
  processes, each feeds its own devices). The batch grows to the next multiple
  of the device count; every sum is fetched at once."""
  global_batch = -(-global_batch // len(devices)) * len(devices)
  num_batches = -(-num_examples // global_batch)
  indices = np.zeros(num_batches * global_batch, np.int32)
  indices[:num_examples] = np.arange(num_examples)
  mask = (np.arange(len(indices)) < num_examples).astype(np.float32)
  shape = (num_batches, len(devices), global_batch // len(devices))
  local = steps.this_process(devices)
  batches = feed.test_batches(indices.reshape(shape)[:, local])
  sums = [eval_step(variables, *feed.test, batch, m[local])
          for batch, m in zip(batches, mask.reshape(shape))]
  totals = jax.tree.map(lambda *x: float(np.sum(x)),
                        *steps.fetch_first(sums))
  count = totals.pop('count')
  result = {k: (100 if k.endswith(('top1', 'top5')) else 1) * v / count
            for k, v in totals.items()}
  return {**result, 'count': int(count)}


def evaluate_teacher(teacher: teachers.Teacher, feed, num_examples: int,
                     global_batch: int, devices: Sequence[Any]):
  """(the teacher's variables replicated on this process's `devices`, its test
  metrics) on `feed`'s test split; `devices` as for evaluate."""
  variables = steps.replicate(teacher.variables,
                              [devices[i] for i in steps.this_process(devices)])
  eval_step = steps.pmap_eval_step(
      steps.make_apply(teacher.model, teacher.mean, teacher.std),
      methods.get_method(methods.BASELINE), devices)
  return variables, evaluate(eval_step, variables, feed, num_examples, global_batch,
                             devices)


def data_settings(path: str, dataset: str = '', data_dir: str = '',
                  manual_dir: str = '') -> Tuple[str, str, str, int]:
  """(dataset, data_dir, manual_dir, image_size) to evaluate the directory
  `path` on: each one given, else its config.json's (a kdjax workdir), else
  (a converted teacher has no config.json) ImageNet's for a teacher with
  ImageNet's stem (torchvision's), CIFAR-100's for any other."""
  saved = {}
  file = workdir_lib.path(path) / workdir_lib.CONFIG_FILE
  if file.exists():
    try:
      saved = json.loads(file.read_text())
    except (OSError, ValueError) as e:
      raise errors.TeacherError(f'Cannot read {file} ({e}); pass --dataset (and '
                                  '--data_dir or --manual_dir) yourself.') from e
  if not saved and workdir_lib.has_model_file(path):
    spec = json.loads((workdir_lib.path(path) / workdir_lib.MODEL_FILE).read_text())
    imagenet_stem = spec.get('kwargs', {}).get('stem') == 'imagenet'
    saved = {'dataset': data.IMAGENET if imagenet_stem else 'cifar100'}
  return (dataset or saved.get('dataset', 'cifar100'), data_dir or saved.get('data_dir', ''),
          manual_dir or saved.get('manual_dir', ''), saved.get('image_size', 224))


def evaluate_teacher_directory(path: str, dataset: str = '', data_dir: str = '',
                               manual_dir: str = '', batch_size: int = 500) -> Dict[str, float]:
  """Test top-1/top-5 (%) and loss of the teacher in `path` (a teacher directory
  or kdjax workdir) on `dataset` (by default its own, see data_settings)."""
  dataset, data_dir, manual_dir, image_size = data_settings(path, dataset, data_dir,
                                                            manual_dir)
  # The teacher first: refused at once, before any download.
  teacher = teachers.load(path, num_classes=data.describe(dataset).num_classes,
                          dataset=dataset)
  splits = data.load_dataset(dataset, data_dir, manual_dir, image_size)
  devices = jax.local_devices()
  feed = feeds.make(splits, devices)
  result = evaluate_teacher(teacher, feed, len(splits.test_labels), batch_size, devices)[1]
  return {**result, 'dataset': dataset}


FLAGS = flags.FLAGS


def _print_evaluation():
  result = evaluate_teacher_directory(FLAGS.teacher, FLAGS.dataset, FLAGS.data_dir,
                                      FLAGS.manual_dir)
  line = (f'{FLAGS.teacher}: test top-1 {result["top1"]:.2f}%, top-5 {result["top5"]:.2f}% '
          f'on {result["count"]} {result["dataset"]} test images')
  known = study.TEACHERS.get(teachers.directory_name(FLAGS.teacher))
  if known and result['dataset'] == known.dataset:
    line += f' ({known.source} reports {known.source_top1:.2f}%'
    line += (f', the study {known.top1:.2f}%)' if known.top1 != known.source_top1 else ')')
  print(line + '.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  errors.exit_on_user_error(_print_evaluation)


if __name__ == '__main__':
  flags.DEFINE_string('teacher', None, 'A teacher directory or kdjax workdir.')
  flags.DEFINE_string('dataset', '', "'cifar100', 'fashion_mnist', 'digits' or 'imagenet2012' "
                      "(default: the workdir's own, from its config.json; for a converted "
                      'teacher ImageNet if it has ImageNet\'s stem, else CIFAR-100).')
  flags.DEFINE_string('data_dir', '', 'TFDS data_dir, as --config.data_dir (default: the '
                      "workdir's).")
  flags.DEFINE_string('manual_dir', '', "Folder with cifar-100-binary.tar.gz, Fashion-MNIST's "
                      "IDX files or ImageNet's tars, as --config.manual_dir (default: the "
                      "workdir's).")
  flags.mark_flags_as_required(['teacher'])
  app.run(main)
