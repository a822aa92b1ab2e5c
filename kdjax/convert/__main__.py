"""python -m kdjax.convert: a PyTorch checkpoint file -> a teacher directory
(kdjax.convert's docstring)."""
from absl import app
from absl import flags

from kdjax import convert
from kdjax import errors

FLAGS = flags.FLAGS


def main(argv):
  del argv
  errors.exit_on_user_error(_convert_file)


def _convert_file():
  """The command line's conversion of --src into --out."""
  state_dict, container = convert.read_state_dict(FLAGS.src)
  given = FLAGS.mean and ([float(m) for m in FLAGS.mean], [float(s) for s in FLAGS.std])
  layout, mean, std = convert.convert_into(FLAGS.arch, state_dict, FLAGS.out, given)
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
