"""Workdirs as the report reads them: each run's config and epoch records, and
what is wrong with it; runs grouped by config, and the study's row of each."""
import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Optional

from configs import default
from kdjax import study
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


def group_key(run: Run) -> str:
  return json.dumps({k: v for k, v in run.config.items() if k != 'seed'}, sort_keys=True)


def study_row(run: Run) -> Optional[study.Row]:
  """The row of its dataset's table that a ResNet18 run reproduces, if any."""
  if run.config.get('model') != 'resnet18':
    return None
  return study.row_of(run.config.get('dataset'), run.config.get('method'), run.teacher_name,
                      bool(run.config.get('mixup_alpha')), run.config.get('width'))


def rows_of(runs: List[Run]):
  """The rows, in table order, of the datasets of `runs`."""
  datasets = {r.config.get('dataset') for r in runs}
  return [row for table in study.STUDIES.values() if table.dataset in datasets
          for row in table.rows]


def label(run: Run) -> str:
  """The run's study row's name, or its folder's (without seed<N>)."""
  row = study_row(run) if run.config else None
  if row:
    return row.name
  folder, name = os.path.split(os.path.normpath(run.workdir))
  return os.path.basename(folder) if re.fullmatch(r'seed\d+', name) else name


def groups(runs: List[Run]) -> List[List[Run]]:
  """The finished runs grouped by config (seeds together), in the study's row
  order, then by folder."""
  grouped: Dict[str, List[Run]] = {}
  for run in runs:
    if run.finished:
      grouped.setdefault(group_key(run), []).append(run)
  rows = rows_of(runs)
  def position(group):
    row = study_row(group[0])
    return (rows.index(row) if row in rows else len(rows), group[0].workdir)
  return sorted(grouped.values(), key=position)


def best_top1s(runs: List[Run]) -> List[float]:
  return [max(r['test_top1'] for r in run.records) for run in runs]
