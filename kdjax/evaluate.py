"""Test accuracy of a teacher directory or any kdjax workdir, before spending 200 epochs on it.

  python -m kdjax.evaluate --teacher=teachers/repvgg_a0
"""
from typing import Dict

from absl import app
from absl import flags
import jax

from kdjax import data
from kdjax import study
from kdjax import teachers
from kdjax import train


def evaluate_teacher(path: str, dataset: str = 'cifar100', data_dir: str = '',
                     manual_dir: str = '', batch_size: int = 500) -> Dict[str, float]:
  """Test top-1/top-5 (%) and loss of the teacher in `path` on `dataset`."""
  splits = data.load_dataset(dataset, data_dir, manual_dir)
  teacher = teachers.load(path, num_classes=splits.num_classes, dataset=dataset)
  devices = jax.local_devices()
  batch_size = -(-batch_size // len(devices)) * len(devices)
  images, labels = train.replicate((splits.test_images, splits.test_labels), devices)
  return train.evaluate_teacher(teacher, images, labels, len(splits.test_labels), batch_size,
                                devices)[1]


FLAGS = flags.FLAGS


def main(argv):
  del argv
  result = evaluate_teacher(FLAGS.teacher, FLAGS.dataset, FLAGS.data_dir, FLAGS.manual_dir)
  line = (f'{FLAGS.teacher}: test top-1 {result["top1"]:.2f}%, top-5 {result["top5"]:.2f}% '
          f'on {result["count"]} {FLAGS.dataset} test images')
  known = study.TEACHERS.get(teachers.directory_name(FLAGS.teacher))
  if known and FLAGS.dataset == 'cifar100':
    line += (f' (the study reports {known.top1:.2f}%, {known.source} '
             f'{known.source_top1:.2f}%)')
  print(line + '.')


if __name__ == '__main__':
  flags.DEFINE_string('teacher', None, 'A teacher directory or kdjax workdir.')
  flags.DEFINE_string('dataset', 'cifar100', "'cifar100' or 'digits'.")
  flags.DEFINE_string('data_dir', '', 'TFDS data_dir, as --config.data_dir.')
  flags.DEFINE_string('manual_dir', '', 'Folder with cifar-100-binary.tar.gz, as --config.manual_dir.')
  flags.mark_flags_as_required(['teacher'])
  app.run(main)
