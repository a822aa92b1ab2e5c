"""Runs the rows of the study's table, each seed in its own workdir.

  scripts/reproduce.sh --seeds=3 [--runs=runs] [--rows=baseline,self_kd] [--dry_run] \\
      [-- --config.dtype=bfloat16 ...]

Row R, seed S trains `main.py --config=<R's config> --config.seed=S` into
<runs>/R/seed<S> (rerunning resumes), then `python -m kdjax.report <runs>`
tabulates them. Rows whose teacher has not been converted stop everything
before any training, with the instructions to convert it.
"""
import shlex
import subprocess
import sys

from absl import app
from absl import flags

from kdjax import build
from kdjax import report
from kdjax import study
from kdjax import teachers

FLAGS = flags.FLAGS
flags.DEFINE_integer('seeds', 1, 'Seeds per row (0, 1, ..., N-1); CIFAR-100 practice is '
                     'the mean of several.')
flags.DEFINE_string('runs', 'runs', 'Folder that receives one workdir per row and seed.')
flags.DEFINE_list('rows', [r.name for r in study.ROWS], 'Rows to run.')
flags.DEFINE_bool('dry_run', False, 'Print the commands instead of running them.')


def commands(rows, seeds, runs, extra):
  return [[sys.executable, 'main.py', f'--config={row.config}',
           f'--workdir={runs}/{row.name}/seed{seed}', f'--config.seed={seed}', *extra]
          for row in rows for seed in range(seeds)]


def missing_teachers(rows):
  """Instructions for every teacher the rows need and nobody has converted yet."""
  notes = {}
  for row in rows:
    path = build.load_config(row.config).teacher
    if row.teacher and not teachers.is_teacher(path):
      notes[path] = f'{path} is missing. {teachers.fetch_instructions(row.teacher, path)}'
  return list(notes.values())


def main(argv):
  by_name = {row.name: row for row in study.ROWS}
  unknown = sorted(set(FLAGS.rows) - set(by_name))
  if unknown:
    raise app.UsageError(f'Unknown rows {unknown}; the rows are {sorted(by_name)}.')
  rows = [by_name[name] for name in FLAGS.rows]
  todo = commands(rows, FLAGS.seeds, FLAGS.runs, argv[1:])
  notes = missing_teachers(rows)
  if FLAGS.dry_run:
    print('\n'.join(shlex.join(c) for c in todo))
    print('\n'.join(notes), file=sys.stderr)
    return
  if notes:
    sys.exit('Nothing was trained: ' + '\n'.join(notes))
  for i, command in enumerate(todo, 1):
    print(f'[{i}/{len(todo)}] {shlex.join(command)}', flush=True)
    if subprocess.run(command, check=False).returncode:
      sys.exit(f'Stopped: {shlex.join(command)} failed (its message is above). Rerunning '
               'this script resumes every row where it stopped.')
  print(report.report(FLAGS.runs))


if __name__ == '__main__':
  app.run(main)
