"""What a run records: metrics.jsonl, TensorBoard events, progress, summary.json.

The epoch records go to metrics.jsonl (one JSON line each, kdjax's own record,
which resume and kdjax.report read) and, through clu's metric writers, to
TensorBoard; clu's ReportProgress logs steps/s and the ETA. Only process 0
writes files; every process keeps the records, so all agree on the summary.
"""
import json
import logging
import os
from typing import Any, Dict, List

from kdjax import timing
from kdjax import workdir as workdir_lib

METRICS_FILE = 'metrics.jsonl'
SUMMARY_FILE = 'summary.json'


def read_records(workdir: str, up_to_step: int) -> List[Dict[str, Any]]:
  """metrics.jsonl's records up to `up_to_step` (later ones belong to no checkpoint)."""
  file = workdir_lib.path(workdir) / METRICS_FILE
  if not file.exists():
    return []
  records = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
  return [r for r in records if r['step'] <= up_to_step]


class Recorder:
  """The records of a run resumed at `start_step`, and the writers that keep them."""

  def __init__(self, workdir: str, start_step: int, total_steps: int, is_writer: bool,
               profile_steps: int = 0, profile_from: int = 0):
    # clu's writers import TensorFlow (seconds): only a run that starts training
    # pays for it, not one refused at start.
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
    from clu import periodic_actions  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.records = read_records(workdir, start_step)
    self._file = workdir_lib.path(workdir) / METRICS_FILE
    self._writer = None
    if is_writer:
      self._write()  # records newer than the checkpoint resumed from are dropped
      # clu writes TensorBoard events with TensorFlow, which must leave the
      # accelerators to JAX.
      tf.config.set_visible_devices([], 'GPU')
      self._writer = metric_writers.AsyncMultiWriter(
          [metric_writers.SummaryWriter(os.fspath(workdir_lib.path(workdir)))])
    self.report_progress = periodic_actions.ReportProgress(
        num_train_steps=total_steps, writer=self._writer, every_secs=60.0)
    # A trace of `profile_steps` steps from step `profile_from` (a call boundary
    # after the first call, which compiles), once, into the workdir for
    # TensorBoard's profiler (jax.profiler, through clu).
    self._profile = None
    if profile_steps and is_writer:
      self._profile = periodic_actions.Profile(
          num_profile_steps=profile_steps, profile_duration_ms=None,
          first_profile=profile_from, every_secs=None,
          logdir=os.fspath(workdir_lib.path(workdir)))

  def step(self, step: int) -> None:
    """Called between mapped calls, with the steps done so far."""
    if self._profile:
      self._profile(step)

  def _write(self):
    # The whole file each time: object stores (gs://) cannot append.
    workdir_lib.write_text(self._file, ''.join(json.dumps(r) + '\n' for r in self.records))

  def add(self, record: Dict[str, Any]) -> None:
    """Adds an epoch's record: to metrics.jsonl before anything else, so a
    kill between it and the checkpoint leaves a record the resume drops."""
    self.records.append(record)
    if self._writer:
      self._write()
      self._writer.write_scalars(record['step'], record)

  def close(self) -> None:
    if self._writer:
      self._writer.close()


def summarize(records, config) -> Dict[str, Any]:
  """Best and final value of every test accuracy (top-1, top-5, heads, peers)
  over the epoch records, and the teacher's if they have it; the best epoch is
  the one of the best final-classifier top-1 (of tied epochs the last, as the
  best checkpoint kept is)."""
  final = records[-1]
  summary = {'best_top1_epoch': max(reversed(records), key=lambda r: r['test_top1'])['epoch']}
  for key in final:
    if key.startswith('test_') and key.endswith(('top1', 'top5')):
      name = key[len('test_'):]
      summary[f'best_{name}'] = max(r[key] for r in records)
      summary[f'final_{name}'] = final[key]
  summary.update({
      'epochs_completed': final['epoch'], 'num_epochs': config.num_epochs,
      'wall_time_s': sum(r['epoch_time_s'] for r in records),
      'config': workdir_lib.config_as_json(config),
  })
  if 'teacher_top1' in final:
    summary['teacher_top1'] = final['teacher_top1']
  return summary


def write_summary(workdir: str, summary: Dict[str, Any]) -> None:
  workdir_lib.write_text(workdir_lib.path(workdir) / SUMMARY_FILE,
                         json.dumps(summary, indent=2))


def log_epoch(record: Dict[str, Any], num_epochs: int, method_part: str,
              eta_s: float) -> None:
  """The epoch's line on the terminal; `method_part` is the method's own."""
  logging.info(
      'epoch %d/%d  loss %.4f  lr %.5f  train top-1 %.2f%%  test top-1 %.2f%%  '
      'top-5 %.2f%%%s  %.0f img/s  epoch %.1fs  ETA %s', record['epoch'], num_epochs,
      record['train_loss'], record['lr'], record['train_top1'], record['test_top1'],
      record['test_top5'], method_part, record['images_per_sec'], record['epoch_time_s'],
      timing.format_duration(eta_s))
