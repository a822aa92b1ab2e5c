"""The results table from finished (and unfinished) runs, beside the study's numbers.

  python -m kdjax.report runs/

Finds every workdir under the given folder (a folder with config.json), groups
runs whose configs differ only in the seed, and prints a markdown table of the
mean +- std over seeds of best-epoch and final-epoch test top-1. The headline is
the best epoch, as the study and its teachers' figures appear to report.
Unfinished runs are listed apart with the epochs they completed, unreadable ones
with the reason. PNG plots of the curves go beside the table.
"""
import dataclasses
import json
import os
import re
import statistics
from typing import Any, Dict, List, Optional, Sequence

from absl import app

from configs import default
from kdjax import errors
from kdjax import study
from kdjax import timing
from kdjax import workdir as workdir_lib


@dataclasses.dataclass
class Run:
  workdir: str
  config: Dict[str, Any]
  records: List[Dict[str, Any]]  # metrics.jsonl, one per completed epoch
  problem: str = ''  # why the run cannot be reported, if it cannot

  @property
  def finished(self) -> bool:
    return not self.problem and len(self.records) == self.config.get('num_epochs')

  @property
  def teacher_name(self) -> str:
    teacher = self.config.get('teacher', '')
    return os.path.basename(os.path.normpath(teacher)) if teacher else ''


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def read_run(workdir: str) -> Run:
  """A workdir's config and epoch records; `problem` says what is wrong with it."""
  try:
    # Completed by the fields added since, at their defaults, so that a seed
    # trained before a field existed groups with one trained after.
    config = workdir_lib.completed(_read_json(os.path.join(workdir, 'config.json')),
                                   default.get_config())
  except (OSError, ValueError, TypeError) as e:
    return Run(workdir, {}, [], f'unreadable config.json ({e})')
  records = []
  try:
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      records = [json.loads(line) for line in f if line.strip()]
  except FileNotFoundError:
    pass
  except ValueError as e:
    return Run(workdir, config, [], f'unreadable metrics.jsonl ({e})')
  run = Run(workdir, config, records)
  if run.finished:
    # A finished run's summary.json must exist and agree with its records.
    try:
      summary = _read_json(os.path.join(workdir, 'summary.json'))
      if summary['final_top1'] != records[-1]['test_top1']:
        run.problem = 'summary.json disagrees with metrics.jsonl'
    except (OSError, ValueError, KeyError, TypeError) as e:
      run.problem = f'unreadable summary.json ({type(e).__name__}: {e})'
  return run


def find_runs(root: str) -> List[Run]:
  return [read_run(d) for d, _, files in sorted(os.walk(root)) if 'config.json' in files]


def _group_key(run: Run) -> str:
  return json.dumps({k: v for k, v in run.config.items() if k != 'seed'}, sort_keys=True)


def study_row(run: Run) -> Optional[study.Row]:
  """The row of its dataset's table that a ResNet18 run reproduces, if any."""
  if run.config.get('model') != 'resnet18':
    return None
  return study.row_of(run.config.get('dataset'), run.config.get('method'), run.teacher_name,
                      bool(run.config.get('mixup_alpha')), run.config.get('width'))


def _rows_of(runs: List[Run]):
  """The rows, in table order, of the datasets of `runs`."""
  datasets = {r.config.get('dataset') for r in runs}
  return [row for table in study.STUDIES.values() if table.dataset in datasets
          for row in table.rows]


def _row_label(run: Run, row: Optional[study.Row]) -> str:
  """The row's name, or for a run of no row its folder's (without seed<N>)."""
  if row:
    return row.name
  folder, name = os.path.split(os.path.normpath(run.workdir))
  return os.path.basename(folder) if re.fullmatch(r'seed\d+', name) else name


def _mean_std(values: Sequence[float]) -> str:
  if len(values) == 1:
    return f'{values[0]:.2f}'
  return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


@dataclasses.dataclass
class Line:
  """One line of the table: a group of finished runs, or one unfinished run."""
  row: str  # the study row's name, or the run's folder
  method: str
  teacher: str
  seeds: str
  best_top1: str
  final_top1: str
  versus_baseline: str
  best_top5: str
  epochs: str
  wall_time: str
  fastest_epoch: str
  images_per_sec: str
  study: str
  difference: str

  def cells(self):
    return [self.row, self.method, self.teacher, self.seeds, self.best_top1,
            self.final_top1, self.versus_baseline, self.best_top5, self.epochs, self.wall_time,
            self.fastest_epoch, self.images_per_sec, self.study, self.difference]


HEADER = ['row', 'method', 'teacher', 'seeds', 'best top-1 %', 'final top-1 %',
          'best - baseline', 'best top-5 %', 'epochs', 'wall time / run', 'fastest epoch',
          'img/s', 'study top-1 %', 'best - study']
STUDY_COLUMNS = 2  # the last ones, left out of a table without study numbers


def _best_top1s(runs: List[Run]) -> List[float]:
  return [max(r['test_top1'] for r in run.records) for run in runs]


def _versus_baseline(runs: List[Run], baseline: Optional[List[Run]]) -> str:
  """Mean best top-1 minus the baseline row's; with 2 or more seeds on both
  sides, whether it exceeds the larger of the two seed standard deviations."""
  if not baseline or baseline is runs:
    return '-'
  mine, base = _best_top1s(runs), _best_top1s(baseline)
  difference = statistics.mean(mine) - statistics.mean(base)
  if min(len(mine), len(base)) < 2:
    return f'{difference:+.2f}'
  spread = max(statistics.stdev(mine), statistics.stdev(base))
  return f'{difference:+.2f} ({"beyond" if abs(difference) > spread else "within"} spread)'


def _finished_line(runs: List[Run], baseline: Optional[List[Run]]) -> Line:
  first = runs[0]
  best = _best_top1s(runs)
  final = [run.records[-1]['test_top1'] for run in runs]
  top5 = [max(r['test_top5'] for r in run.records) for run in runs]
  wall = statistics.mean(sum(r['epoch_time_s'] for r in run.records) for run in runs)
  # A run sharing its machine has slow epochs; its fastest one shows what an
  # epoch costs alone.
  fastest = min(r['epoch_time_s'] for run in runs for r in run.records)
  speed = statistics.mean(statistics.mean(r['images_per_sec'] for r in run.records)
                          for run in runs)
  row = study_row(first)
  mean_best = statistics.mean(best)
  has_study = row and row.study_top1 is not None
  return Line(
      row=_row_label(first, row),
      method=first.config.get('method', '?'), teacher=first.teacher_name or '-',
      seeds=str(len(runs)), best_top1=_mean_std(best), final_top1=_mean_std(final),
      versus_baseline=_versus_baseline(runs, baseline), best_top5=_mean_std(top5),
      epochs=str(first.config['num_epochs']),
      wall_time=timing.format_duration(wall), fastest_epoch=f'{fastest:.0f} s',
      images_per_sec=f'{speed:.0f}',
      study=f'{row.study_top1:.2f}' if has_study else '-',
      difference=f'{mean_best - row.study_top1:+.2f}' if has_study else '-')


def _unfinished_line(run: Run) -> Line:
  planned = run.config.get('num_epochs', '?')
  status = run.problem or f'unfinished: {len(run.records)}/{planned} epochs'
  best = f'{max(r["test_top1"] for r in run.records):.2f} so far' if (
      run.records and not run.problem) else '-'
  row = study_row(run) if run.config else None
  return Line(row=_row_label(run, row), method=run.config.get('method', '?'),
              teacher=run.teacher_name or '-',
              seeds=f'seed {run.config.get("seed", "?")}', best_top1=best, final_top1='-',
              versus_baseline='-', best_top5='-', epochs=status, wall_time='-', fastest_epoch='-',
              images_per_sec='-',
              study=f'{row.study_top1:.2f}' if row and row.study_top1 is not None else '-',
              difference='-')


def table_lines(runs: List[Run]) -> List[Line]:
  """Finished groups first (in the study's row order), then unfinished runs."""
  groups: Dict[str, List[Run]] = {}
  for run in runs:
    if run.finished:
      groups.setdefault(_group_key(run), []).append(run)
  rows = _rows_of(runs)
  def position(group):
    row = study_row(group[0])
    return (rows.index(row) if row in rows else len(rows), group[0].workdir)
  baselines = {g[0].config.get('dataset'): g for g in groups.values()
               if getattr(study_row(g[0]), 'name', None) == 'baseline'}
  finished = [_finished_line(g, baselines.get(g[0].config.get('dataset')))
              for g in sorted(groups.values(), key=position)]
  return finished + [_unfinished_line(r) for r in runs if not r.finished]


def markdown(lines: List[Line]) -> str:
  """The table; without a study number on any line, without the study's columns."""
  width = len(HEADER) - (0 if any(l.study != '-' for l in lines) else STUDY_COLUMNS)
  rows = [HEADER[:width], ['---'] * width] + [l.cells()[:width] for l in lines]
  return '\n'.join('| ' + ' | '.join(r) + ' |' for r in rows)


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top  (only plotting needs it)
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  return pyplot


def _label(run: Run, root: str) -> str:
  return os.path.relpath(run.workdir, root)


def plot_curves(runs: List[Run], root: str, path: str) -> None:
  """Test top-1 and train loss per epoch, a line per run, on one figure."""
  plt = _pyplot()
  fig, (top1, loss) = plt.subplots(1, 2, figsize=(13, 5))
  for run in runs:
    if run.problem or not run.records:
      continue
    epochs = [r['epoch'] for r in run.records]
    label = _label(run, root)
    top1.plot(epochs, [r['test_top1'] for r in run.records], label=label)
    loss.plot(epochs, [r['train_loss'] for r in run.records], label=label)
  top1.set(xlabel='epoch', ylabel='test top-1 %', title='Test top-1')
  loss.set(xlabel='epoch', ylabel='train loss', title='Train loss', yscale='log')
  top1.legend(fontsize='small')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_heads(runs: List[Run], root: str, path: str) -> bool:
  """Per-head, final and ensemble test top-1 of self-distillation runs; False if none."""
  runs = [r for r in runs if not r.problem and r.records and 'test_head1_top1' in r.records[0]]
  if not runs:
    return False
  plt = _pyplot()
  columns = min(len(runs), 3)
  rows = -(-len(runs) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(6 * columns, 5 * rows), squeeze=False)
  for ax in axes.flat[len(runs):]:
    ax.set_axis_off()
  for ax, run in zip(axes.flat, runs):
    epochs = [r['epoch'] for r in run.records]
    keys = sorted(k for k in run.records[0] if k.startswith('test_head'))
    for key in keys + ['test_top1', 'test_ensemble_top1']:
      name = key[len('test_'):-len('_top1')] or 'final'  # test_top1 is the final classifier
      ax.plot(epochs, [r[key] for r in run.records], label=name)
    ax.set(xlabel='epoch', ylabel='test top-1 %', title=_label(run, root))
    ax.legend(fontsize='small')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


def _sources(runs: List[Run]) -> str:
  """Where the study column's numbers come from, for rows whose number is not
  the study's own (ImageNet's); '' if none."""
  sources: Dict[str, List[str]] = {}
  for run in runs:
    row = study_row(run)
    if row and row.source and row.name not in sources.get(row.source, []):
      sources.setdefault(row.source, []).append(row.name)
  if not sources:
    return ''
  return ('The study top-1 column is, for ' + '; for '.join(
      f'{", ".join(names)}: {source}' for source, names in sources.items()) + '.\n\n')


class NoRunsError(errors.UserError, FileNotFoundError):
  """A folder without kdjax workdirs under it."""


REPORT_FILE = 'report.md'


def report(root: str) -> str:
  """The markdown report of every run under `root`; writes it (REPORT_FILE) and
  its plots into `root`."""
  runs = find_runs(root)
  if not runs:
    raise NoRunsError(f'No kdjax workdir (a folder with config.json) under {root!r}; pass '
                      'the folder that holds the runs (e.g. runs).')
  lines = table_lines(runs)
  curves = os.path.join(root, 'report_curves.png')
  plot_curves(runs, root, curves)
  plots = [curves]
  heads = os.path.join(root, 'report_heads.png')
  if plot_heads(runs, root, heads):
    plots.append(heads)
  text = (markdown(lines) + '\n\n' + _sources(runs) + 'Top-1 is the mean ± std over seeds of each run\'s best '
          'epoch (the headline, as the study reports) and of its final epoch. '
          'best - baseline is the difference of mean best top-1 to the baseline row; '
          'with 2 or more seeds each, "beyond spread" when it exceeds the larger of the '
          'two standard deviations. '
          f'Plots: {", ".join(os.path.basename(p) for p in plots)}.\n')
  with open(os.path.join(root, REPORT_FILE), 'w') as f:
    f.write(text)
  return text


def main(argv):
  if len(argv) != 2:
    raise app.UsageError('Usage: python -m kdjax.report RUNS_DIR')
  print(errors.exit_on_user_error(lambda: report(argv[1])), end='')


if __name__ == '__main__':
  app.run(main)
