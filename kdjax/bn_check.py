"""Whether a run's test accuracy hangs on its BatchNorm running statistics.

  python -m kdjax.bn_check --workdir=W [--batches=100] [--draws=3]

Evaluates the best checkpoint of workdir W (every classifier: final, heads,
ensemble) with its stored BatchNorm statistics, then with statistics
re-estimated from `batches` training batches augmented as W trained but not
mixed, and from the same number of batches mixed as W trained (its
mixup_alpha), `draws` times. Parameters stay as saved. With mixup, the stored
statistics come from mixed batches, each mixed by its own lam: a gap between
the stored and the clean estimate, and a spread over the mixed draws, say how
much of the test accuracy is the statistics'.
"""
import json
from typing import Dict, List

from absl import app
from absl import flags
import jax
from jax import lax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdjax import checkpoint
from kdjax import data
from kdjax import errors
from kdjax import evaluate
from kdjax import methods
from kdjax import models
from kdjax import steps
from kdjax import teachers
from kdjax import workdir as workdir_lib
from kdjax.data import feeds


def _load(workdir: str):
  """(config, model mapped over steps.AXIS, best variables, step, method) of a workdir."""
  try:
    config = ml_collections.ConfigDict(json.loads(
        (workdir_lib.path(workdir) / workdir_lib.CONFIG_FILE).read_text()))
    spec = json.loads((workdir_lib.path(workdir) / workdir_lib.MODEL_FILE).read_text())
  except (OSError, ValueError) as e:
    raise errors.TeacherError(f'{workdir} is not a readable kdjax workdir ({e}).') from e
  kwargs = teachers.tuples(spec['kwargs'])
  model = models.get_model(spec['model'], num_classes=spec['num_classes'],
                           axis_name=steps.AXIS, **kwargs)
  step, variables = checkpoint.restore_best_variables(
      workdir, teachers.abstract_variables(model, spec))
  return config, model, variables, step, methods.get_method(config.method)


def reestimate(model, variables, images, keys, lams, partners, config, devices):
  """BatchNorm statistics after one train-mode pass (momentum as in training)
  over each batch of `images` [batches, batch, ...], augmented with `keys`
  and mixed with `lams` [batches] and partner orders `partners` [batches,
  batch] (lam 1: unmixed); the parameters are not touched."""
  apply = steps.make_apply(model, config.mean, config.std)

  def one(batch_stats, batch):
    pixels, key, lam, partner = batch
    if config.augment:
      pixels = data.augment(pixels, data.example_keys(key, jnp.arange(len(pixels))),
                            config.rotation_degrees)
    pixels = data.to_float(pixels)
    pixels = lam * pixels + (1 - lam) * pixels[partner]
    _, batch_stats = apply(variables['params'], batch_stats, pixels, True)
    return batch_stats, None

  run = jax.pmap(lambda bs, batches: lax.scan(one, bs, batches)[0], axis_name=steps.AXIS,
                 devices=devices[:1])
  stats = run(jax.tree.map(lambda x: x[None], variables['batch_stats']),
              jax.tree.map(lambda x: x[None], (images, keys, lams, partners)))
  return {'params': variables['params'], 'batch_stats': jax.tree.map(lambda x: x[0], stats)}


def check(workdir: str, batches: int = 100, draws: int = 3) -> List[Dict[str, float]]:
  """Test top-1 (%) of every classifier: [stored, clean, mixed draw 1, ...]."""
  config, model, variables, _, method = _load(workdir)
  if data.describe(config.dataset).encoded:
    raise errors.UserError(f'kdjax.bn_check reads a dataset held as arrays; {workdir} trained '
                           f'on {config.dataset}, which the host stream decodes.')
  dataset = data.load_dataset(config.dataset, config.data_dir, config.manual_dir)
  config.mean, config.std = dataset.mean, dataset.std
  devices = jax.local_devices()[:1]
  eval_step = steps.pmap_eval_step(steps.make_apply(model, dataset.mean, dataset.std),
                                   method, devices)
  feed = feeds.Resident((), (dataset.test_images, dataset.test_labels), devices)

  def top1(variables):
    result = evaluate.evaluate(eval_step, steps.replicate(variables, devices), feed,
                               len(dataset.test_labels), config.eval_batch_size, devices)
    return {k: v for k, v in result.items() if k.endswith('top1')}

  def estimate(seed, mixed):
    rng = np.random.default_rng([seed, 7])
    order = rng.permutation(len(dataset.train_labels))[:batches * config.batch_size]
    images = dataset.train_images[order].reshape(batches, config.batch_size,
                                                 *dataset.train_images.shape[1:])
    keys = jax.random.split(jax.random.PRNGKey(seed), batches)
    lams = (rng.beta(config.mixup_alpha, config.mixup_alpha, batches) if mixed
            else np.ones(batches)).astype(np.float32)
    partners = np.stack([rng.permutation(config.batch_size) for _ in range(batches)])
    return top1(reestimate(model, variables, images, keys, lams, partners, config, devices))

  results = [top1(variables), estimate(0, mixed=False)]
  if config.mixup_alpha:
    results += [estimate(seed, mixed=True) for seed in range(1, draws + 1)]
  return results


FLAGS = flags.FLAGS


def _print_check():
  results = check(FLAGS.workdir, FLAGS.batches, FLAGS.draws)
  names = ['stored', f'clean ({FLAGS.batches} batches)'] + [
      f'mixed draw {i}' for i in range(1, len(results) - 1)]
  keys = sorted(results[0], key=lambda k: (k != 'top1', k))  # the final classifier first
  print('| statistics | ' + ' | '.join(k[:-len('_top1')] or 'final' for k in keys) + ' |')
  print('|---' * (len(keys) + 1) + '|')
  for name, result in zip(names, results):
    print(f'| {name} | ' + ' | '.join(f'{result[k]:.2f}' for k in keys) + ' |')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  errors.exit_on_user_error(_print_check)


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'A kdjax workdir (its best checkpoint is checked).')
  flags.DEFINE_integer('batches', 100, 'Training batches each re-estimate passes over.')
  flags.DEFINE_integer('draws', 3, 'Re-estimates from mixed batches, each its own draws.')
  flags.mark_flags_as_required(['workdir'])
  app.run(main)
