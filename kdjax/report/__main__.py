"""python -m kdjax.report RUNS_DIR: the report of the runs under RUNS_DIR
(kdjax.report's docstring)."""
from absl import app
from absl import flags

from kdjax import errors
from kdjax import report
from kdjax.report import plots

FLAGS = flags.FLAGS
flags.DEFINE_string('reference', report.REFERENCE, 'The row every other row is compared '
                    'with (its name in the table).')
flags.DEFINE_enum('x', 'epochs', list(plots.XS), 'Draw the curves against epochs, or '
                  'against the images the student forwarded (compute-matched).')


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('Usage: python -m kdjax.report RUNS_DIR [--reference=ROW] '
                         '[--x=epochs|images]')
  print(errors.exit_on_user_error(lambda: report.report(argv[1], FLAGS.reference, FLAGS.x)),
        end='')


if __name__ == '__main__':
  app.run(main)
