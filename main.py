"""Trains and evaluates a kdjax config: python main.py --config=configs/baseline.py --workdir=runs/baseline"""
import logging as std_logging
import signal
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from kdjax import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and summary.json; '
                    'rerunning with the same workdir resumes.')
config_flags.DEFINE_config_file('config', None, 'Experiment config file, e.g. '
                                'configs/baseline.py.', lock_config=True)
flags.DEFINE_bool('fresh', False, 'Start over in --workdir: a run already there (of any '
                  'config) is moved to <workdir>.previous-<time> first.')
flags.mark_flags_as_required(['config', 'workdir'])


def parse_flags(argv):
  """absl flag parsing, with a one-line error for an unknown --config.FIELD."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    while e.args and isinstance(e.args[0], BaseException):  # ml_collections nests them
      e = e.args[0]
    sys.exit(f'Unknown config field in the command line: {e.args[0] if e.args else e}\n'
             'Every field is listed, with its meaning, in configs/default.py.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # Orbax logs every save step at INFO; keep the terminal to kdjax's progress.
  logging.get_absl_logger().addFilter(
      lambda record: record.levelno >= std_logging.WARNING
      or 'orbax' not in record.pathname)
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir, fresh=FLAGS.fresh)
  except train.Preempted as e:
    logging.warning('%s', e)
    sys.exit(128 + signal.SIGTERM)  # the shell's status for a SIGTERM-ed process


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
