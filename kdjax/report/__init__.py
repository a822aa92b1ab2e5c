"""The results table and plots from finished (and unfinished) runs.

  python -m kdjax.report RUNS_DIR [--reference=ROW] [--x=epochs|images]

Finds every workdir under RUNS_DIR (a folder with config.json), groups runs
whose configs differ only in the seed, and writes RUNS_DIR/report.md: a
markdown table of each row's mean ± std over seeds of best-epoch and
final-epoch test top-1 (the headline is the best epoch, as the study and its
teachers' figures appear to report), its difference to the reference row
with Welch's 95 % interval and p-value (`statistics`), the images and FLOPs
its training computed (`compute`), and the published number beside each row
of a study's table, with its source. Unfinished runs are listed apart with
the epochs they completed, unreadable ones with the reason. The pictures
(`plots`) go beside it. Modules: runs (reading and grouping), statistics,
compute, table, plots.
"""
import os
from typing import Dict, List

from kdjax import errors
from kdjax.report import compute
from kdjax.report import plots
from kdjax.report import runs as runs_lib
from kdjax.report import statistics
from kdjax.report.runs import find_runs
from kdjax.report.table import HEADER  # the table's first line, as callers read it
from kdjax.report.table import markdown
from kdjax.report.table import REFERENCE
from kdjax.report.table import table_lines


class NoRunsError(errors.UserError, FileNotFoundError):
  """A folder without kdjax workdirs under it."""


class UnknownReferenceError(errors.UserError, ValueError):
  """--reference names no row of the runs."""


REPORT_FILE = 'report.md'


def _sources(all_runs: List[runs_lib.Run]) -> str:
  """Where the study column's numbers come from, for rows whose number is not
  the study's own (ImageNet's); '' if none."""
  sources: Dict[str, List[str]] = {}
  for run in all_runs:
    row = runs_lib.study_row(run)
    if row and row.source and row.name not in sources.get(row.source, []):
      sources.setdefault(row.source, []).append(row.name)
  if not sources:
    return ''
  return ('The study top-1 column is, for ' + '; for '.join(
      f'{", ".join(names)}: {source}' for source, names in sources.items()) + '.\n\n')


def _explanation(reference: str, rows: int, plot_files: List[str]) -> str:
  return (
      'Top-1 is the mean ± std over seeds of each run\'s best epoch (the headline, as the '
      'study reports) and of its final epoch. '
      f'best - {reference} is the difference of mean best top-1 to the {reference} row, '
      f'with the {100 * statistics.CONFIDENCE:.0f} % confidence interval of Welch\'s t-test '
      '(unequal variances; scipy.stats.ttest_ind) and its two-sided p-value: "separated" '
      'when the interval excludes 0. With fewer than 2 seeds on a side there is no interval '
      'and no verdict. Each p-value is for its own comparison: of '
      f'{rows} rows compared, about {rows * (1 - statistics.CONFIDENCE):.1f} would be '
      'separated by chance alone if no method differed, and no correction for multiple '
      'comparisons is made. Student images are those its training forwarded (DLB\'s and '
      'CS-KD\'s steps forward twice the batch); student and teacher FLOPs, XLA\'s count of '
      'their training (the student\'s forward and backward passes, the teacher\'s forward). '
      f'Plots: {", ".join(plot_files)} (each row\'s mean over seeds, its band their range; '
      'finished rows only).\n')


def report(root: str, reference: str = REFERENCE, x: str = 'epochs') -> str:
  """The markdown report of every run under `root` against row `reference`;
  writes it (REPORT_FILE) and its plots, drawn against `x` (plots.XS), into
  `root`."""
  all_runs = find_runs(root)
  if not all_runs:
    raise NoRunsError(f'No kdjax workdir (a folder with config.json) under {root!r}; pass '
                      'the folder that holds the runs (e.g. runs).')
  groups = runs_lib.groups(all_runs)
  labels = [runs_lib.label(g[0]) for g in groups]
  if reference != REFERENCE and reference not in labels:
    raise UnknownReferenceError(f'--reference={reference}: no finished row of that name under '
                                f'{root!r}; its rows are {labels}.')
  lines = table_lines(all_runs, reference)
  by_folder = compute.folders(all_runs)
  per_epoch = [compute.of_run(g[0], by_folder).student_images / len(g[0].records)
               for g in groups]
  plot_files = ['report_curves.png']
  if groups:
    plots.plot_curves(groups, labels, per_epoch, os.path.join(root, plot_files[0]), x)
  if plots.plot_heads(groups, labels, os.path.join(root, 'report_heads.png')):
    plot_files.append('report_heads.png')
  compared = sum(1 for l in lines if l.separated is not None)
  text = (markdown(lines, reference) + '\n\n' + _sources(all_runs)
          + _explanation(reference, compared, plot_files))
  with open(os.path.join(root, REPORT_FILE), 'w') as f:
    f.write(text)
  return text
