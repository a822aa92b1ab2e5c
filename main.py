"""Trains and evaluates a kdjax config: python main.py --config=configs/baseline.py --workdir=runs/baseline"""
import logging as std_logging
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from kdjax import console
from kdjax import errors
from kdjax import guards
from kdjax import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and summary.json; '
                    'rerunning with the same workdir resumes.')
config_flags.DEFINE_config_file('config', None, 'Experiment config file, e.g. '
                                'configs/baseline.py.', lock_config=True)
flags.DEFINE_bool('fresh', False, 'Start over in --workdir: a run already there (of any '
                  'config) is moved to <workdir>.previous-<time> first.')
flags.DEFINE_bool('distributed', False, 'Train on several processes (hosts): call '
                  'jax.distributed.initialize(), which finds its peers itself on TPU pods '
                  'and under SLURM; elsewhere also give the three flags below.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for --distributed.')
flags.DEFINE_integer('num_processes', None, 'How many processes train, for --distributed.')
flags.DEFINE_integer('process_id', None, "This process's index, for --distributed.")
flags.mark_flags_as_required(['config', 'workdir'])


def parse_flags(argv):
  """absl flag parsing, with a one-line error for an unknown --config.FIELD."""
  try:
    return FLAGS(argv)
  except (AttributeError, KeyError) as e:
    while e.args and isinstance(e.args[0], BaseException):  # ml_collections nests them
      e = e.args[0]
    problem = ' '.join(str(e.args[0] if e.args else e).split())  # one line
    print(f'error: unknown config field {problem} Every field is listed, with its meaning, '
          'in configs/default.py.', file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # JAX logs each platform it finds missing ('Unable to initialize backend').
  std_logging.getLogger('jax._src.xla_bridge').setLevel(std_logging.WARNING)
  if FLAGS.distributed:
    # CPU processes exchange collectives over gloo; accelerators ignore this.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  if jax.process_index() > 0:  # process 0 reports for all
    logging.set_verbosity(logging.WARNING)
  console.show_kdjax_lines()
  try:
    # What the user asked for cannot run: one line, no traceback.
    errors.exit_on_user_error(
        lambda: train.train_and_evaluate(FLAGS.config, FLAGS.workdir, fresh=FLAGS.fresh))
  except guards.Preempted as e:
    logging.warning('%s', e)
    sys.exit(e.exit_status)  # the shell's status for the signal: 143 or 130


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
