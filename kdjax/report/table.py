"""The results table: a line per group of finished runs (seeds together), in
the study's row order, then one per unfinished or unreadable run."""
import dataclasses
import math
import statistics
from typing import Dict, List, Optional, Sequence

from kdjax import timing
from kdjax.report import compute
from kdjax.report import runs as runs_lib
from kdjax.report import statistics as stats_lib

REFERENCE = 'baseline'  # the row every other row is compared with, by default


@dataclasses.dataclass
class Line:
  """One line of the table: a group of finished runs, or one unfinished run."""
  row: str  # the study row's name, or the run's folder
  method: str
  teacher: str
  seeds: str
  best_top1: str
  final_top1: str
  versus_reference: str
  best_top5: str
  epochs: str
  student_images: str
  student_flops: str
  teacher_flops: str
  wall_time: str
  fastest_epoch: str
  images_per_sec: str
  study: str
  difference: str
  separated: Optional[bool] = None  # the comparison's verdict, where it has one

  def cells(self):
    return [self.row, self.method, self.teacher, self.seeds, self.best_top1,
            self.final_top1, self.versus_reference, self.best_top5, self.epochs,
            self.student_images, self.student_flops, self.teacher_flops, self.wall_time,
            self.fastest_epoch, self.images_per_sec, self.study, self.difference]


def header(reference: str = REFERENCE) -> List[str]:
  return ['row', 'method', 'teacher', 'seeds', 'best top-1 %', 'final top-1 %',
          f'best - {reference} [95 % CI], Welch', 'best top-5 %', 'epochs', 'student images',
          'student FLOPs', 'teacher FLOPs', 'wall time / run', 'fastest epoch', 'img/s',
          'study top-1 %', 'best - study']


HEADER = header()
STUDY_COLUMNS = 2  # the last ones, left out of a table without study numbers


def si(value: Optional[float]) -> str:
  """A count with an SI prefix: 6.00 M, 1.23 P; '-' for none, '?' for unknown."""
  if value is None:
    return '-'
  if math.isnan(value):
    return '?'
  for prefix, scale in (('E', 1e18), ('P', 1e15), ('T', 1e12), ('G', 1e9), ('M', 1e6),
                        ('k', 1e3)):
    if value >= scale:
      return f'{value / scale:.2f} {prefix}'
  return f'{value:.0f}'


def _mean_std(values: Sequence[float]) -> str:
  if len(values) == 1:
    return f'{values[0]:.2f}'
  return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def _finished_line(group: List[runs_lib.Run], reference: Optional[List[runs_lib.Run]],
                   by_folder) -> Line:
  first = group[0]
  best = runs_lib.best_top1s(group)
  final = [run.records[-1]['test_top1'] for run in group]
  top5 = [max(r['test_top5'] for r in run.records) for run in group]
  wall = statistics.mean(sum(r['epoch_time_s'] for r in run.records) for run in group)
  # A run sharing its machine has slow epochs; its fastest one shows what an
  # epoch costs alone.
  fastest = min(r['epoch_time_s'] for run in group for r in run.records)
  speed = statistics.mean(statistics.mean(r['images_per_sec'] for r in run.records)
                          for run in group)
  row = runs_lib.study_row(first)
  has_study = row and row.study_top1 is not None
  versus, separated = '-', None
  if reference and reference is not group:
    difference = stats_lib.welch(best, runs_lib.best_top1s(reference))
    versus, separated = difference.cell(), difference.separated
  used = compute.of_run(first, by_folder)
  return Line(
      row=runs_lib.label(first), method=first.config.get('method', '?'),
      teacher=first.teacher_name or '-', seeds=str(len(group)), best_top1=_mean_std(best),
      final_top1=_mean_std(final), versus_reference=versus, best_top5=_mean_std(top5),
      epochs=str(first.config['num_epochs']), student_images=si(used.student_images),
      student_flops=si(used.student_flops), teacher_flops=si(used.teacher_flops),
      wall_time=timing.format_duration(wall), fastest_epoch=f'{fastest:.0f} s',
      images_per_sec=f'{speed:.0f}',
      study=f'{row.study_top1:.2f}' if has_study else '-',
      difference=f'{statistics.mean(best) - row.study_top1:+.2f}' if has_study else '-',
      separated=separated)


def _unfinished_line(run: runs_lib.Run) -> Line:
  planned = run.config.get('num_epochs', '?')
  status = run.problem or f'unfinished: {len(run.records)}/{planned} epochs'
  best = f'{max(r["test_top1"] for r in run.records):.2f} so far' if (
      run.records and not run.problem) else '-'
  row = runs_lib.study_row(run) if run.config else None
  return Line(row=runs_lib.label(run), method=run.config.get('method', '?'),
              teacher=run.teacher_name or '-',
              seeds=f'seed {run.config.get("seed", "?")}', best_top1=best, final_top1='-',
              versus_reference='-', best_top5='-', epochs=status, student_images='-',
              student_flops='-', teacher_flops='-', wall_time='-', fastest_epoch='-',
              images_per_sec='-',
              study=f'{row.study_top1:.2f}' if row and row.study_top1 is not None else '-',
              difference='-')


def table_lines(all_runs: List[runs_lib.Run], reference: str = REFERENCE) -> List[Line]:
  """Finished groups first (in the study's row order), then unfinished runs;
  each group compared with the `reference` row of its dataset."""
  groups = runs_lib.groups(all_runs)
  references: Dict[str, List[runs_lib.Run]] = {
      g[0].config.get('dataset'): g for g in groups if runs_lib.label(g[0]) == reference}
  by_folder = compute.folders(all_runs)
  finished = [_finished_line(g, references.get(g[0].config.get('dataset')), by_folder)
              for g in groups]
  return finished + [_unfinished_line(r) for r in all_runs if not r.finished]


def markdown(lines: List[Line], reference: str = REFERENCE) -> str:
  """The table; without a study number on any line, without the study's columns."""
  columns = header(reference)
  width = len(columns) - (0 if any(l.study != '-' for l in lines) else STUDY_COLUMNS)
  rows = [columns[:width], ['---'] * width] + [l.cells()[:width] for l in lines]
  return '\n'.join('| ' + ' | '.join(r) + ' |' for r in rows)
