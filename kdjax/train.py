"""The training loop: train_and_evaluate(config, workdir) -> summary."""
import contextlib
import logging
import time
from typing import Any, Dict

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from configs import default
from kdjax import build as build_lib
from kdjax import checkpoint
from kdjax import data
from kdjax import errors
from kdjax import evaluate
from kdjax import guards
from kdjax import methods
from kdjax import order as order_lib
from kdjax import records as records_lib
from kdjax import steps
from kdjax import workdir as workdir_lib
from kdjax.data import feeds
from kdjax.data import stream


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       fresh: bool = False) -> Dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns
  the summary. With `fresh`, an existing run there is first moved to
  <workdir>.previous-<time>. Raises guards.Preempted after saving on SIGTERM or
  Ctrl-C, an errors.UserError for what the user must change.

  Everything that can refuse the run without a download is checked first:
  before anything is written, the config, the teacher and its fit (each once,
  build.prepare) and the dataset's local files; then the workdir (taking its
  lock); only then is the dataset loaded (or downloaded)."""
  # Every process's devices, in the order the steps map over them.
  devices = jax.devices()
  plan = build_lib.prepare(config, data.describe(config.dataset, config.image_size), devices)
  load_start = time.time()
  load_dataset = data.open_dataset(config.dataset, config.data_dir, config.manual_dir,
                                   config.image_size)
  load_time = time.time() - load_start
  is_writer = jax.process_index() == 0
  with contextlib.ExitStack() as stack:
    if is_writer:  # process 0 holds the lock for all
      if fresh:
        with workdir_lib.exclusive(workdir):
          moved = workdir_lib.move_aside(workdir)
        if moved:
          logging.info('Moved the previous run in %s to %s.', workdir, moved)
      stack.enter_context(workdir_lib.exclusive(workdir))
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('kdjax: workdir locked')
    workdir_lib.check_config(config, workdir, default.get_config())
    workdir_lib.check_writable(workdir)
    load_start = time.time()
    dataset = load_dataset()
    logging.info('Loaded %s: %d train / %d test images in %.1f s.', config.dataset,
                 len(dataset.train_labels), len(dataset.test_labels),
                 load_time + time.time() - load_start)
    if config.train_examples:
      if config.train_examples > len(dataset.train_labels):
        raise errors.ConfigError('train_examples', config.train_examples, f'{config.dataset} '
                                 f'has {len(dataset.train_labels)} training examples; set at '
                                 'most that many, or 0 for all.')
      dataset = dataset.first_train(config.train_examples)
      logging.info('Training on its first %d training examples (train_examples).',
                   config.train_examples)
    return _train(plan, workdir, dataset, is_writer)


def _train(plan, workdir, dataset, is_writer):
  """The run itself, on a checked plan and workdir, and loaded data."""
  config, devices = plan.config, plan.devices
  # This process feeds the `local` devices its slice of each global batch.
  local = steps.this_process(devices)
  local_devices = [devices[i] for i in local]
  num_train, num_test = len(dataset.train_labels), len(dataset.test_labels)
  steps_per_epoch = num_train // config.batch_size
  if steps_per_epoch == 0:
    raise errors.ConfigError('batch_size', config.batch_size, f'it is larger than the '
                             f'{num_train} training examples of {config.dataset}.')
  total_steps = steps_per_epoch * config.num_epochs
  run = build_lib.assemble(plan, steps_per_epoch, num_train)
  init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
  state = jax.device_get(run.init_state(init_key))
  # Room for the last keep_checkpoints, the best, and one being written.
  state_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(state))
  workdir_lib.check_free_space(workdir, state_bytes, config.keep_checkpoints + 2)
  manager, state = checkpoint.resume(workdir, config.keep_checkpoints, state)
  step = int(state.step)
  if step:
    logging.info('Resuming from the checkpoint at step %d (epoch %d).', step,
                 step // steps_per_epoch)
    saved_on = checkpoint.saved_device_count(manager, step)
    if saved_on not in (None, len(devices)):
      # The global batch, its BatchNorm statistics and per-example keys do not
      # depend on the split; XLA's reductions over it round differently.
      logging.warning('This run was saved on %d devices and resumes on %d: the same '
                      'steps, equal up to float rounding (not bit for bit).', saved_on,
                      len(devices))
  if step >= total_steps:  # nothing left to train
    logging.info('This run trained all %d epochs already; rewriting its summary.',
                 config.num_epochs)
    return _summarize(workdir, records_lib.read_records(workdir, step), config, is_writer)
  student_params, part_params = methods.split_parts(state.params)
  count = lambda tree: sum(np.size(x) for x in jax.tree.leaves(tree)) / 1e6
  logging.info('Parameters: student %.2f M%s.', count(student_params),
               f' + method {count(part_params):.2f} M' if part_params else '')
  recorder = records_lib.Recorder(workdir, step, total_steps, is_writer,
                                  config.profile_steps, step + run.steps_per_call)
  if is_writer:
    workdir_lib.write_text(workdir_lib.path(workdir) / workdir_lib.CONFIG_FILE,
                           config.to_json(indent=2))
    name, kwargs = run.model_spec
    workdir_lib.write_model_file(workdir, name, dataset.num_classes, kwargs, dataset.mean,
                                 dataset.std, dataset.info.image_shape)

  # Device-resident splits (CIFAR: 184 MB as uint8 on each device) or the stream.
  feed = feeds.make(dataset, local_devices,
                    feeds.Layout(tuple(local), len(devices), run.method.groups),
                    input_pipeline=config.input_pipeline, augment=config.augment,
                    seed=config.seed,
                    workers=config.input_workers, prefetch=config.input_prefetch)
  teacher_variables, teacher_top1 = {}, None
  if run.teacher:
    teacher_variables, teacher_test = evaluate.evaluate_teacher(
        run.teacher, feed, num_test, config.eval_batch_size, devices)
    teacher_top1 = teacher_test['top1']
    logging.info('Teacher %s: test top-1 %.2f%% (its own input normalization and BatchNorm '
                 'running statistics, as published).', run.teacher.description, teacher_top1)
  state, rng = steps.replicate((state, train_key), local_devices)
  per_call = run.steps_per_call
  calls_per_epoch = steps_per_epoch // per_call
  # Images a step forwards: the batch, and its partners or carried examples.
  images_per_step = config.batch_size * run.method.groups
  composition = {'pairs': ' + their class partners', 'carry': ' + the previous step\'s',
                 'views': ' + their strong views'}
  logging.info('Training %s (%s, %s) on %s: %d examples, %d steps/epoch (%d calls of %d) '
               'x %d epochs, batch %d%s over %d devices in %d process(es), %s.',
               config.model, config.method, run.dtype, config.dataset, num_train,
               steps_per_epoch, calls_per_epoch, per_call, config.num_epochs,
               config.batch_size, composition.get(run.method.composition, ''), len(devices),
               jax.process_count(), feed.description)

  def save_or_stop(step, stop, top1=None):
    """Checkpoints the state after `step` (its losses already checked): orbax
    copies the device arrays and writes them in the background. With `stop`,
    waits for the save and stops."""
    checkpoint.save(manager, step, state, devices, top1)
    if stop:
      manager.wait_until_finished()
      raise guards.Preempted(f'Stopped by {notice.reason} after saving step {step} in '
                             f'{workdir}; rerun the same command to resume from it.',
                             notice.exit_status)

  def losses_of(calls):
    """The step losses of mapped calls' metrics, in one device-to-host copy."""
    return np.concatenate(steps.fetch_first([m['loss'] for m in calls]))

  with guards.PreemptionNotice() as notice:
    while step < total_steps:
      epoch, first = divmod(step, steps_per_epoch)
      # Calls tile every epoch and every checkpoint is taken between calls.
      assert first % per_call == 0, (first, per_call)
      order = order_lib.epoch_order(
          config.seed, epoch, num_train, config.batch_size, len(devices),
          run.method.composition, dataset.train_labels).reshape(
              calls_per_epoch, per_call, len(devices), -1)[:, :, local].transpose(
                  0, 2, 1, 3)  # [calls, this process's devices, steps, per-device rows]
      epoch_start = time.time()
      call_metrics, unchecked = [], 0  # this epoch's calls; from which on unchecked
      batches = feed.train_calls(order[first // per_call:], step)
      for call in range(first // per_call, calls_per_epoch):
        lams = data.mixup_lambdas(config.seed, step, per_call, config.mixup_alpha)
        state, metrics = run.train_steps(
            state, *feed.train, _next_batch(batches, step, manager),
            np.broadcast_to(lams, (len(local), per_call)), rng, teacher_variables)
        call_metrics.append(metrics)
        step += per_call
        recorder.step(step)
        if config.log_every_steps and (step % config.log_every_steps) < per_call:
          logging.info('step %d/%d  loss %.4f  lr %.5f', step, total_steps,
                       losses_of([metrics])[-1], run.schedule(step - 1))
        stop = notice.should_stop(step // per_call)
        # The epoch's last call is saved below, with the epoch's test accuracy.
        if call < calls_per_epoch - 1 and (stop or (
            config.checkpoint_every_steps
            and (step % config.checkpoint_every_steps) < per_call)):
          guards.check_finite(losses_of(call_metrics[unchecked:]), step, steps_per_epoch,
                              manager)
          unchecked = len(call_metrics)
          save_or_stop(step, stop)
      # The epoch's metrics in one fetch, which also waits for its last step (the
      # host dispatches ahead of the device, so progress is timed only here).
      train = steps.fetch_first(call_metrics)
      train_time = time.time() - epoch_start
      recorder.report_progress(step)
      train_losses = np.concatenate([m['loss'] for m in train])
      guards.check_finite(train_losses[unchecked * per_call:], step, steps_per_epoch,
                          manager)
      test = evaluate.evaluate(
          run.eval_step, {'params': state.params, 'batch_stats': state.batch_stats},
          feed, num_test, config.eval_batch_size, devices)
      epoch_time = time.time() - epoch_start
      record = {
          'epoch': epoch + 1, 'step': step, 'lr': float(run.schedule(step - 1)),
          'train_loss': float(np.mean(train_losses)),
          'train_top1': 100 * float(np.mean([m['accuracy'] for m in train])),
          **{f'test_{k}': v for k, v in test.items() if k != 'count'},
          'images_per_sec': len(train_losses) * images_per_step / train_time,
          'epoch_time_s': epoch_time,
          **({'teacher_top1': teacher_top1} if run.teacher else {}),
          **run.method.records(config, methods.split_parts(state.params)[1],
                               steps.fetch_first),
      }
      recorder.add(record)
      records_lib.log_epoch(record, config.num_epochs, run.method.describe_test(test),
                            (total_steps - step) / len(train_losses) * epoch_time)
      save_or_stop(step, stop, test['top1'])

  manager.wait_until_finished()
  recorder.close()
  return _summarize(workdir, recorder.records, config, is_writer)


def _next_batch(batches, step, manager):
  """The next call's batch; a dead input worker stops the run, to resume from
  the last checkpoint."""
  try:
    return next(batches)
  except stream.InputWorkerError as e:
    raise errors.InputError(f'The input pipeline stopped at step {step} (the last checkpoint: '
                            f'step {manager.latest_step() or 0}): {e}') from None


def _summarize(workdir, records, config, is_writer):
  """The summary of a trained run's epoch `records`, written to summary.json."""
  if not records:
    raise RuntimeError(f'{workdir} holds a finished checkpoint but no metrics.jsonl '
                       'records to summarize; use a fresh --workdir.')
  summary = records_lib.summarize(records, config)
  if is_writer:
    records_lib.write_summary(workdir, summary)
  logging.info('Done: best test top-1 %.2f%% (epoch %d), final %.2f%%.',
               summary['best_top1'], summary['best_top1_epoch'], summary['final_top1'])
  return summary
