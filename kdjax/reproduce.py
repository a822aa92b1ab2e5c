"""Runs the rows of the study's table, each seed in its own workdir.

  scripts/reproduce.sh [--study=cifar100|imagenet|fashion_mnist] --seeds=3 [--runs=DIR] \\
      [--rows=baseline,self_kd] [--results=DIR] [--dry_run] \\
      [--devices_per_run=1 [--devices=0,1,...] [--platform=gpu|tpu]] \\
      [-- --config.dtype=float32 ...]

Row R, seed S trains `main.py --config=<R's config> --config.seed=S` into
<runs>/R/seed<S> (rerunning resumes), then `python -m kdjax.report <runs>`
tabulates them. A study whose teacher kdjax trains (fashion_mnist) trains it
first, into <runs>/teacher, and its rows learn from it. CIFAR-100 rows whose
teacher has not been fetched stop everything before any training, with the
command that fetches it. With --devices_per_run=N the runs go concurrently,
each on its own N devices (an 8-GPU node trains the seven rows at once), each
logging to <runs>/R/seed<S>.log. With --results=DIR the finished runs' small
files (config.json, summary.json, metrics.jsonl) are copied into DIR and the
report is written there: the folder to commit.
"""
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Sequence

from absl import app
from absl import flags

from kdjax import build
from kdjax import report
from kdjax import study
from kdjax import teachers
from kdjax import workdir as workdir_lib

FLAGS = flags.FLAGS
flags.DEFINE_enum('study', 'cifar100', list(study.STUDIES), 'Whose table: the study on '
                  'CIFAR-100, the field\'s ResNet34 -> ResNet18 on ImageNet '
                  '(configs/imagenet.py; pass -- --config.manual_dir=FOLDER of the ILSVRC2012 '
                  'tars), or the study\'s rows on Fashion-MNIST (configs/fashion_mnist.py).')
flags.DEFINE_integer('seeds', 1, 'Seeds per row (0, 1, ..., N-1); CIFAR-100 practice is '
                     'the mean of several.')
flags.DEFINE_string('runs', None, 'Folder that receives one workdir per row and seed '
                    '(default: runs/<study>).')
flags.DEFINE_list('rows', None, 'Rows to run (default: every row of the study).')
flags.DEFINE_string('results', None, 'Copy the finished runs\' config.json, summary.json '
                    'and metrics.jsonl here, and write the report here.')
flags.DEFINE_bool('dry_run', False, 'Print the commands instead of running them.')
flags.DEFINE_integer('devices_per_run', 0, 'Run the rows concurrently, each on this many '
                     'devices of --devices; 0 runs them one after another on all devices.')
flags.DEFINE_list('devices', None, 'Device indices to share out with --devices_per_run '
                  '(default: CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists).')
flags.DEFINE_enum('platform', 'gpu', ['gpu', 'tpu'], 'How a run is limited to its devices: '
                  'CUDA_VISIBLE_DEVICES (gpu) or TPU_VISIBLE_CHIPS (tpu, one chip a run).')


TEACHER_RUN = 'teacher'  # the workdir, under the runs, of a teacher kdjax trains


def teacher_command(table: study.Study, runs: str, extra) -> List[str]:
  """The command that trains the study's own teacher, or [] if it fetches them."""
  if not table.teacher_config:
    return []
  return [sys.executable, 'main.py', f'--config={table.teacher_config}',
          f'--workdir={runs}/{TEACHER_RUN}', *extra]


def commands(table: study.Study, rows, seeds, runs, extra) -> List[List[str]]:
  """Each row's command for each seed, seed by seed; a row of a study with its
  own teacher learns from <runs>/teacher."""
  def teacher(row):
    return [f'--config.teacher={runs}/{TEACHER_RUN}'] if (
        row.teacher and table.teacher_config) else []
  return [[sys.executable, 'main.py', f'--config={row.config}',
           f'--workdir={runs}/{row.name}/seed{seed}', f'--config.seed={seed}',
           *teacher(row), *extra]
          for seed in range(seeds) for row in rows]  # every row's seed 0 first


def missing_teachers(rows):
  """Instructions for every fetched teacher the rows need and nobody has fetched yet."""
  notes = {}
  for row in rows:
    if row.teacher not in study.TEACHERS:
      continue
    path = build.load_config(row.config).teacher
    if not workdir_lib.has_model_file(path):
      notes[path] = f'{path} is missing. {teachers.fetch_instructions(row.teacher, path)}'
  return list(notes.values())


def device_environment(platform: str, devices: Sequence[str], index: int) -> Dict[str, str]:
  """Environment variables that give the `index`-th concurrent run `devices` alone."""
  if platform == 'gpu':
    return {'CUDA_VISIBLE_DEVICES': ','.join(devices)}
  if len(devices) != 1:
    raise app.UsageError('--platform=tpu runs one chip per run: pass --devices_per_run=1.')
  # Cloud TPU's settings for one process per chip on a TPU VM.
  port = 8476 + index
  return {'TPU_VISIBLE_CHIPS': devices[0], 'TPU_CHIPS_PER_PROCESS_BOUNDS': '1,1,1',
          'TPU_PROCESS_BOUNDS': '1,1,1', 'TPU_PROCESS_PORT': str(port),
          'TPU_PROCESS_ADDRESSES': f'localhost:{port}'}


def available_devices() -> List[str]:
  """--devices, else CUDA_VISIBLE_DEVICES, else the GPUs nvidia-smi lists. JAX
  is not asked: initializing it here would take the devices from the runs."""
  if FLAGS.devices:
    return FLAGS.devices
  if os.environ.get('CUDA_VISIBLE_DEVICES'):
    return os.environ['CUDA_VISIBLE_DEVICES'].split(',')
  try:
    listed = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True,
                            check=True).stdout.splitlines()
  except (OSError, subprocess.CalledProcessError):
    listed = []
  if not listed:
    raise app.UsageError('--devices_per_run needs the devices to share out: pass '
                         '--devices=0,1,... (no GPU was found by nvidia-smi).')
  return [str(i) for i in range(len(listed))]


def run_concurrently(todo: Sequence[List[str]], groups: Sequence[Sequence[str]],
                     platform: str, logs: Sequence[str]) -> List[int]:
  """Runs the commands `todo`, each on a free group of devices as one frees up,
  its output into its log file; returns their exit codes."""
  free = list(range(len(groups)))
  running, codes, queue = {}, [None] * len(todo), list(range(len(todo)))
  while queue or running:
    while queue and free:
      i, group = queue.pop(0), free.pop(0)
      env = {**os.environ, **device_environment(platform, groups[group], group)}
      os.makedirs(os.path.dirname(logs[i]), exist_ok=True)
      with open(logs[i], 'ab') as log:
        running[i] = (subprocess.Popen(todo[i], env=env, stdout=log,
                                       stderr=subprocess.STDOUT), group)
      print(f'[{i + 1}/{len(todo)}] devices {",".join(groups[group])}: '
            f'{shlex.join(todo[i])} > {logs[i]}', flush=True)
    for i, (process, group) in list(running.items()):
      if process.poll() is not None:
        codes[i] = process.returncode
        free.append(group)
        del running[i]
        print(f'[{i + 1}/{len(todo)}] finished with status {codes[i]}', flush=True)
    time.sleep(0.2)
  return codes


SMALL_FILES = ('config.json', 'summary.json', 'metrics.jsonl')  # what --results keeps


def copy_results(runs: str, results: str) -> int:
  """Copies every finished run's SMALL_FILES from `runs` into `results`, at the
  same relative paths; returns how many runs."""
  finished = [run for run in report.find_runs(runs) if run.finished]
  for run in finished:
    destination = os.path.join(results, os.path.relpath(run.workdir, runs))
    os.makedirs(destination, exist_ok=True)
    for name in SMALL_FILES:
      shutil.copyfile(os.path.join(run.workdir, name), os.path.join(destination, name))
  return len(finished)


def run_one_by_one(todo: Sequence[List[str]]) -> None:
  for i, command in enumerate(todo, 1):
    print(f'[{i}/{len(todo)}] {shlex.join(command)}', flush=True)
    if subprocess.run(command, check=False).returncode:
      sys.exit(f'Stopped: {shlex.join(command)} failed (its message is above). '
               'Rerunning this script resumes every row where it stopped.')


def run_on_groups(todo: Sequence[List[str]], groups, platform: str) -> None:
  logs = [f'{c[3][len("--workdir="):]}.log' for c in todo]
  codes = run_concurrently(todo, groups, platform, logs)
  failed = [shlex.join(c) for c, code in zip(todo, codes) if code]
  if failed:
    sys.exit('These runs failed (their logs say why); rerunning this script resumes '
             'every row where it stopped:\n' + '\n'.join(failed))


def main(argv):
  table = study.STUDIES[FLAGS.study]
  by_name = {row.name: row for row in table.rows}
  unknown = sorted(set(FLAGS.rows or ()) - set(by_name))
  if unknown:
    raise app.UsageError(f'Unknown rows {unknown}; the rows of {FLAGS.study} are '
                         f'{sorted(by_name)}.')
  rows = [by_name[name] for name in FLAGS.rows] if FLAGS.rows else list(table.rows)
  runs = FLAGS.runs or os.path.join('runs', FLAGS.study)
  first = teacher_command(table, runs, argv[1:])
  todo = commands(table, rows, FLAGS.seeds, runs, argv[1:])
  notes = missing_teachers(rows)
  groups = []
  if FLAGS.devices_per_run:
    devices = available_devices()
    n = FLAGS.devices_per_run
    groups = [devices[i:i + n] for i in range(0, len(devices) - n + 1, n)]
    if not groups:
      raise app.UsageError(f'--devices_per_run={n} needs at least {n} devices; there are '
                           f'{len(devices)} ({",".join(devices)}).')
  if FLAGS.dry_run:
    if first:
      print(shlex.join(first))
    for i, command in enumerate(todo):
      env = (device_environment(FLAGS.platform, groups[i % len(groups)], i % len(groups))
             if groups else {})
      print(shlex.join([f'{k}={v}' for k, v in env.items()] + command))
    print('\n'.join(notes), file=sys.stderr)
    return
  if notes:
    sys.exit('Nothing was trained: ' + '\n'.join(notes))
  # The teacher first, alone: every row with a teacher reads it.
  for batch in ([first] if first else []), todo:
    if groups:
      run_on_groups(batch, groups, FLAGS.platform)
    else:
      run_one_by_one(batch)
  if FLAGS.results:
    print(f'Copied {copy_results(runs, FLAGS.results)} finished runs into {FLAGS.results}.')
  print(report.report(FLAGS.results or runs), end='')


if __name__ == '__main__':
  app.run(main)
