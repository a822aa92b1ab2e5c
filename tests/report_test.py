"""The report and the reproduce script, on workdirs the test fabricates."""
import json
import os
import statistics
import subprocess
import sys

import matplotlib.image
import pytest

from configs import baseline
from configs import fashion_mnist
from configs import offline_kd
from configs import offline_kd_no_mixup
from configs import self_kd
from kdjax import report
from kdjax import reproduce
from kdjax import study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _write_run(workdir, config, top1s, heads=False, summary=True, num_epochs=None):
  """A workdir as train_and_evaluate leaves it, with the given test top-1 per epoch."""
  os.makedirs(workdir)
  config = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
  config['num_epochs'] = num_epochs or len(top1s)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    json.dump(config, f)
  records = []
  for epoch, top1 in enumerate(top1s, 1):
    record = {'epoch': epoch, 'step': 390 * epoch, 'train_loss': 4.0 / epoch,
              'test_top1': top1, 'test_top5': top1 + 15, 'images_per_sec': 1000.0 + epoch,
              'epoch_time_s': 50.0 + 10 * epoch}
    if heads:
      record.update({'test_head1_top1': top1 - 20, 'test_head2_top1': top1 - 10,
                     'test_head3_top1': top1 - 5, 'test_ensemble_top1': top1 + 1})
    records.append(record)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)
  if summary:
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump({'final_top1': top1s[-1], 'best_top1': max(top1s)}, f)


def _config(module, seed, arg=None, **overrides):
  config = module.get_config(arg)
  config.seed = seed
  config.update(overrides)
  return config


@pytest.fixture
def runs(tmp_path):
  root = tmp_path / 'runs'
  # Baseline: 3 seeds; best and final differ.
  for seed, top1s in enumerate(([70.0, 74.0, 73.5], [71.0, 75.0, 74.0], [72.0, 76.5, 76.0])):
    _write_run(root / 'baseline' / f'seed{seed}', _config(baseline, seed), top1s)
  # Self-distillation: one seed, with heads.
  _write_run(root / 'self_kd' / 'seed0', _config(self_kd, 0), [60.0, 78.0], heads=True)
  # Unfinished: 2 of 5 epochs, no summary yet.
  _write_run(root / 'self_kd' / 'seed1', _config(self_kd, 1), [50.0, 65.0], heads=True,
             summary=False, num_epochs=5)
  # Finished, but its summary.json is corrupt.
  _write_run(root / 'baseline_bad' / 'seed7', _config(baseline, 7), [10.0, 20.0, 30.0])
  (root / 'baseline_bad' / 'seed7' / 'summary.json').write_text('{"final_top1": 3')
  return root



def _reproduce(*args):
  # The script runs `python` from PATH: this interpreter's, as in an activated venv.
  env = {**os.environ, 'PATH': os.pathsep.join((os.path.dirname(sys.executable),
                                                os.environ.get('PATH', '')))}
  return subprocess.run(['bash', 'scripts/reproduce.sh', *args], cwd=ROOT, env=env, text=True,
                        capture_output=True, timeout=300)

def test_table_numbers_equal_the_inputs(runs):
  lines = report.table_lines(report.find_runs(str(runs)))
  by_label = {(l.method, l.seeds): l for l in lines}
  base = by_label[('baseline', '3')]
  best = [74.0, 75.0, 76.5]
  final = [73.5, 74.0, 76.0]
  assert base.best_top1 == f'{statistics.mean(best):.2f} ± {statistics.stdev(best):.2f}'
  assert base.best_top1 == '75.17 ± 1.26'
  assert base.final_top1 == f'{statistics.mean(final):.2f} ± {statistics.stdev(final):.2f}'
  assert base.best_top5 == '90.17 ± 1.26'
  # Epochs of 60, 70 and 80 s: the mean run's sum, and the fastest epoch.
  assert (base.epochs, base.wall_time, base.fastest_epoch, base.images_per_sec) == (
      '3', '0:03:30', '60 s', '1002')
  assert (base.study, base.difference, base.versus_reference) == ('74.40', '+0.77', '-')
  self_line = by_label[('self', '1')]
  assert self_line.versus_reference == (f'{78.0 - statistics.mean(best):+.2f} (no verdict: '
                                        '1 seed)') == '+2.83 (no verdict: 1 seed)'
  assert (self_line.best_top1, self_line.final_top1, self_line.study,
          self_line.difference) == ('78.00', '78.00', '77.89', '+0.11')
  # Finished groups come in the study's row order, before anything unfinished.
  assert [l.method for l in lines[:2]] == ['baseline', 'self']


def test_offline_runs_with_and_without_mixup_are_told_apart(tmp_path):
  # Rows 2 and 7: the same teacher and method, mixup 0.4 against none.
  root = tmp_path / 'runs'
  _write_run(root / 'mixup', _config(offline_kd, 0, 'repvgg_a0'), [77.0])
  _write_run(root / 'no_mixup', _config(offline_kd_no_mixup, 0, 'repvgg_a0'), [76.0])
  lines = report.table_lines(report.find_runs(str(root)))
  assert [(l.row, l.method, l.teacher, l.best_top1, l.study, l.difference)
          for l in lines] == [
      ('offline_kd_repvgg_a0', 'offline', 'repvgg_a0', '77.00', '77.56', '-0.56'),
      ('offline_kd_no_mixup_repvgg_a0', 'offline', 'repvgg_a0', '76.00', '76.86', '-0.86')]


def test_a_seed_saved_before_a_field_existed_groups_with_one_saved_after(tmp_path):
  # config.json of an earlier kdjax lacks the fields added since; at their
  # defaults they change nothing, as when such a run resumes.
  root = tmp_path / 'runs'
  earlier = _config(baseline, 0).to_dict()
  del earlier['nesterov'], earlier['dlb_weight']
  _write_run(root / 'seed0', earlier, [70.0])
  _write_run(root / 'seed1', _config(baseline, 1), [72.0])
  # A field set away from its default is another experiment.
  _write_run(root / 'nesterov', _config(baseline, 2, nesterov=True), [71.0])
  lines = report.table_lines(report.find_runs(str(root)))
  assert sorted((l.seeds, l.best_top1) for l in lines) == [('1', '71.00'),
                                                         ('2', '71.00 ± 1.41')]


def test_unfinished_and_unreadable_runs_are_flagged_never_finished(runs):
  lines = report.table_lines(report.find_runs(str(runs)))
  unfinished = [l for l in lines if l.epochs.startswith('unfinished')]
  assert [(l.method, l.seeds, l.epochs, l.best_top1) for l in unfinished] == [
      ('self', 'seed 1', 'unfinished: 2/5 epochs', '65.00 so far')]
  bad = [l for l in lines if 'summary.json' in l.epochs]
  assert len(bad) == 1 and bad[0].seeds == 'seed 7'
  assert bad[0].epochs.startswith('unreadable summary.json') and bad[0].best_top1 == '-'
  # Neither counts among the finished seeds.
  assert sum(int(l.seeds) for l in lines if l.seeds.isdigit()) == 4


def test_command_line_prints_the_table_and_writes_valid_pngs(runs):
  result = subprocess.run([sys.executable, '-m', 'kdjax.report', str(runs)], cwd=ROOT,
                          text=True, capture_output=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert '| row | method | teacher | seeds | best top-1 % |' in result.stdout
  assert '| baseline | baseline | - | 3 | 75.17 ± 1.26 | 74.50 ± 1.32 |' in result.stdout
  assert (runs / 'report.md').read_text() == result.stdout
  assert 'headline' in result.stdout
  for name in ('report_curves.png', 'report_heads.png'):
    path = runs / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100


def test_fashion_mnist_rows_are_named_in_their_order_without_the_studys_columns(tmp_path):
  root = tmp_path / 'results'
  for seed, top1s in enumerate(([90.0, 91.0], [90.5, 91.5])):
    _write_run(root / 'offline_kd_no_mixup' / f'seed{seed}',
               _config(fashion_mnist, seed, 'offline_kd_no_mixup'), top1s)
    _write_run(root / 'offline_kd' / f'seed{seed}', _config(fashion_mnist, seed, 'offline_kd'),
               [top1 + 1.0 for top1 in top1s])
    _write_run(root / 'baseline' / f'seed{seed}', _config(fashion_mnist, seed, 'baseline'),
               top1s)
  _write_run(root / 'teacher', _config(fashion_mnist, 0, 'teacher'), [92.0, 93.0])
  text = report.report(str(root))
  table = text.split('\n\n')[0].splitlines()
  assert table[0] == ('| row | method | teacher | seeds | best top-1 % | final top-1 % | '
                      'best - baseline [95 % CI], Welch | best top-5 % | epochs | '
                      'student images | student FLOPs | teacher FLOPs | wall time / run | '
                      'fastest epoch | img/s |')
  assert [line.split(' | ')[:4] for line in table[2:]] == [
      ['| baseline', 'baseline', '-', '2'], ['| offline_kd', 'offline', 'teacher', '2'],
      ['| offline_kd_no_mixup', 'offline', 'teacher', '2'], ['| teacher', 'baseline', '-', '1']]
  assert [line.split(' | ')[4:7] for line in table[2:]] == [
      ['91.25 ± 0.35', '91.25 ± 0.35', '-'],
      ['92.25 ± 0.35', '92.25 ± 0.35', '+1.00 [-0.52, +2.52] p=0.11, not separated'],
      ['91.25 ± 0.35', '91.25 ± 0.35', '+0.00 [-1.52, +1.52] p=1, not separated'],
      ['93.00', '93.00', '+1.75 (no verdict: 1 seed)']]
  assert (root / 'report.md').read_text() == text


def test_an_unknown_reference_row_is_a_clear_error(runs):
  with pytest.raises(report.UnknownReferenceError, match=r"--reference=dlb: no finished row "
                     r"of that name under .*; its rows are \['baseline', 'self_kd'\]"):
    report.report(str(runs), reference='dlb')
  assert not (runs / report.REPORT_FILE).exists()


def test_report_of_a_folder_without_runs_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='No kdjax workdir'):
    report.report(str(tmp_path))
  result = subprocess.run([sys.executable, '-m', 'kdjax.report', str(tmp_path)], cwd=ROOT,
                          text=True, capture_output=True, timeout=300)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      f"error: No kdjax workdir (a folder with config.json) under '{tmp_path}'; pass the "
      'folder that holds the runs (e.g. runs).'], result.stderr[-3000:]


def test_reproduce_dry_run_lists_every_row_and_seed():
  result = _reproduce('--dry_run', '--seeds=2', '--runs=out', '--', '--config.dtype=bfloat16')
  assert result.returncode == 0, result.stderr[-3000:]
  commands = result.stdout.strip().splitlines()
  assert len(commands) == 2 * len(study.ROWS) == 14
  for row in study.ROWS:
    for seed in (0, 1):
      assert any(f'main.py --config={row.config} --workdir=out/{row.name}/seed{seed} '
                 f'--config.seed={seed} --config.dtype=bfloat16' in c for c in commands)


def test_reproduce_fashion_mnist_trains_its_teacher_first_then_every_row_seed_by_seed():
  result = _reproduce('--study=fashion_mnist', '--dry_run', '--seeds=2')
  assert result.returncode == 0, result.stderr[-3000:]
  commands = [c.split(' ', 1)[1] for c in result.stdout.strip().splitlines()]
  assert commands[0] == ('main.py --config=configs/fashion_mnist.py:teacher '
                         '--workdir=runs/fashion_mnist/teacher')
  rows = study.FASHION_MNIST_ROWS
  assert len(commands) == 1 + 2 * len(rows) == 21
  for i, (seed, row) in enumerate((s, r) for s in (0, 1) for r in rows):
    teacher = ' --config.teacher=runs/fashion_mnist/teacher' if row.teacher else ''
    assert commands[1 + i] == (f'main.py --config={row.config} '
                               f'--workdir=runs/fashion_mnist/{row.name}/seed{seed} '
                               f'--config.seed={seed}{teacher}')
  assert result.stderr.strip() == ''  # no teacher to fetch


def test_reproduce_copies_the_small_files_of_finished_runs_only(tmp_path):
  runs, results = tmp_path / 'runs', tmp_path / 'results'
  _write_run(runs / 'baseline' / 'seed0', _config(fashion_mnist, 0, 'baseline'), [90.0])
  (runs / 'baseline' / 'seed0' / 'checkpoints').mkdir()
  _write_run(runs / 'self_kd' / 'seed0', _config(fashion_mnist, 0, 'self_kd'), [80.0],
             summary=False, num_epochs=10)
  assert reproduce.copy_results(str(runs), str(results)) == 1
  assert sorted(os.listdir(results / 'baseline' / 'seed0')) == sorted(reproduce.SMALL_FILES)
  assert not (results / 'self_kd').exists()
  for name in reproduce.SMALL_FILES:
    assert ((results / 'baseline' / 'seed0' / name).read_bytes()
            == (runs / 'baseline' / 'seed0' / name).read_bytes())


def test_reproduce_stops_before_training_when_a_teacher_is_missing(tmp_path):
  if os.path.exists(os.path.join(ROOT, 'teachers', 'resnet50', 'model.json')):
    pytest.skip('this checkout has the resnet50 teacher')
  result = _reproduce('--rows=baseline,offline_kd_resnet50', f'--runs={tmp_path / "out"}')
  assert result.returncode == 1
  assert 'Nothing was trained: teachers/resnet50 is missing' in result.stderr
  assert 'python -m kdjax.teachers fetch resnet50' in result.stderr
  assert not (tmp_path / 'out').exists()


def test_reproduce_dry_run_gives_each_concurrent_run_its_own_devices():
  result = _reproduce('--dry_run', '--seeds=1', '--rows=baseline,self_kd,offline_kd_repvgg_a0',
                      '--devices_per_run=2', '--devices=0,1,2,3,4')
  assert result.returncode == 0, result.stderr[-3000:]
  commands = result.stdout.strip().splitlines()
  # Two groups of 2 from 5 devices; the third run waits for the first group.
  assert [c.split()[0] for c in commands] == [
      'CUDA_VISIBLE_DEVICES=0,1', 'CUDA_VISIBLE_DEVICES=2,3', 'CUDA_VISIBLE_DEVICES=0,1']


def test_reproduce_runs_concurrently_each_run_on_its_own_devices(tmp_path):
  code = ('import os, sys, time; print("start", time.time(), os.environ["CUDA_VISIBLE_DEVICES"]); '
          'time.sleep(0.5); print("end", time.time())')
  todo = [[sys.executable, '-c', code] for _ in range(5)]
  logs = [str(tmp_path / f'run{i}.log') for i in range(5)]
  codes = reproduce.run_concurrently(todo, [['0', '1'], ['2', '3']], 'gpu', logs)
  assert codes == [0] * 5
  spans, devices = [], set()
  for log in logs:
    start, end = (line.split() for line in open(log).read().splitlines())
    spans.append((float(start[1]), float(end[1])))
    devices.add(start[2])
  assert devices == {'0,1', '2,3'}
  # At most two at once (one per group), and some did run together.
  overlaps = [sum(s <= t < e for s, e in spans) for t, _ in spans]
  assert max(overlaps) == 2


def test_imagenet_rows_stand_beside_their_published_numbers_and_sources(tmp_path):
  from configs import imagenet  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'runs'
  # At a 32 px crop: the compute columns' FLOP counts compile sooner.
  for row, top1 in (('baseline', 69.5), ('kd', 70.53), ('reviewkd', 71.0), ('self_kd', 70.0)):
    _write_run(root / row / 'seed0', _config(imagenet, 0, row, image_size=32), [60.0, top1])
  lines = {l.row: l for l in report.table_lines(report.find_runs(str(root)))}
  assert [l.row for l in report.table_lines(report.find_runs(str(root)))] == [
      'baseline', 'kd', 'reviewkd', 'self_kd']
  assert (lines['kd'].teacher, lines['kd'].study, lines['kd'].difference) == (
      'resnet34_imagenet', '71.03', '-0.50')
  assert (lines['reviewkd'].study, lines['reviewkd'].versus_reference) == (
      '71.61', '+1.50 (no verdict: 1 seed)')
  assert (lines['baseline'].study, lines['self_kd'].study) == ('69.76', '-')
  text = report.report(str(root))
  assert text.splitlines()[0] == '| ' + ' | '.join(report.HEADER) + ' |'
  assert (f'The study top-1 column is, for baseline, reviewkd: {study.DKD_PAPER}; for kd: '
          f'{study.MDISTILLER}.') in text


def test_reproduce_imagenet_lists_every_row_and_needs_torchvisions_resnet34():
  result = _reproduce('--study=imagenet', '--dry_run', '--', '--config.manual_dir=/data/ilsvrc')
  assert result.returncode == 0, result.stderr[-3000:]
  commands = [c.split(' ', 1)[1] for c in result.stdout.strip().splitlines()]
  assert commands == [f'main.py --config=configs/imagenet.py:{row} '
                      f'--workdir=runs/imagenet/{row}/seed0 --config.seed=0 '
                      '--config.manual_dir=/data/ilsvrc'
                      for row in ('baseline', 'kd', 'at', 'crd', 'reviewkd', 'dkd', 'nkd',
                                  'mlkd', 'dot', 'ctkd', 'sdd_dkd', 'srd', 'self_kd',
                                  'offline_self_kd')]
  if not os.path.exists(os.path.join(ROOT, 'teachers', 'resnet34_imagenet', 'model.json')):
    assert 'python -m kdjax.teachers fetch resnet34_imagenet' in result.stderr


def test_welchs_interval_and_p_value_follow_the_welch_satterthwaite_formula():
  from kdjax.report import statistics as report_statistics  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  # The committed Fashion-MNIST seeds: offline KD without mixup, the baseline.
  a, b = [89.82, 90.02, 89.72], [88.90, 89.75, 89.34]
  got = report_statistics.welch(a, b)
  va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
  se = (va + vb)**0.5
  df = (va + vb)**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
  mean = statistics.mean(a) - statistics.mean(b)
  half = stats.t.ppf(0.975, df) * se
  assert got.mean == pytest.approx(mean)
  assert (got.low, got.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
  assert got.p_value == pytest.approx(2 * stats.t.sf(abs(mean) / se, df))
  assert round(got.p_value, 2) == 0.16 and got.separated is False
  assert got.cell() == '+0.52 [-0.41, +1.45] p=0.16, not separated'
  # An interval that excludes 0 separates; one seed on a side gives no verdict.
  assert report_statistics.welch([3.0, 3.1, 3.2], [1.0, 1.1, 1.2]).separated is True
  one = report_statistics.welch([90.0], [89.0, 89.5])
  assert (one.low, one.separated, one.cell()) == (None, None, '+0.75 (no verdict: 1 seed)')


def test_the_flop_count_of_a_resnet_is_its_convolutions_and_classifier():
  from kdjax import models  # pylint: disable=g-import-not-at-top
  from kdjax.report import compute  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  # Fashion-MNIST's student: a ResNet18 of width 8 on 28x28x1, grids 28, 14, 7, 4.
  kwargs = {'width': 8}
  train, forward = compute.flops_per_image('resnet18', json.dumps(kwargs), 10, (28, 28, 1))
  params = jax.eval_shape(lambda: models.get_model('resnet18', 10, **kwargs).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)), train=False))['params']
  # Multiply-adds of every kernel tap that falls on the input (padding's zeros
  # are not computed), per axis: each output position's taps inside the input.
  def taps(size, kernel, stride):
    pad = kernel // 2
    outputs = (size + 2 * pad - kernel) // stride + 1
    return sum(sum(0 <= o * stride - pad + k < size for k in range(kernel))
               for o in range(outputs))
  grids = [28, 28, 14, 7, 4]  # the stem's input, then each stage's
  macs = taps(28, 3, 1)**2 * 1 * 8
  for module, layers in params.items():
    if not module.startswith('stage'):
      continue
    stage, block = (int(n) for n in module[len('stage'):].split('_block'))
    for name, layer in layers.items():
      if 'kernel' not in layer:
        continue
      kh, _, cin, cout = layer['kernel'].shape
      first = block == 1 and name in ('conv1', 'shortcut_conv')
      stride = 2 if first and stage > 1 else 1
      macs += taps(grids[stage - 1] if first else grids[stage], kh, stride)**2 * cin * cout
  macs += params['classifier']['kernel'].shape[0] * params['classifier']['kernel'].shape[1]
  # XLA also counts BatchNorm, ReLU, pooling and the residual adds: a few % more.
  assert 2 * macs <= forward <= 1.1 * 2 * macs
  # The backward pass costs about twice the forward: 3x in all.
  assert 2.7 * forward <= train <= 3.3 * forward


def test_the_curves_draw_one_line_per_row(tmp_path):
  from kdjax.report import plots  # pylint: disable=g-import-not-at-top
  from kdjax.report import runs as runs_lib  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'runs'
  for seed in range(2):
    _write_run(root / 'baseline' / f'seed{seed}', _config(fashion_mnist, seed, 'baseline'),
               [80.0 + seed, 85.0])
    _write_run(root / 'dlb' / f'seed{seed}', _config(fashion_mnist, seed, 'dlb'),
               [81.0, 86.0 + seed])
  groups = runs_lib.groups(runs_lib.find_runs(str(root)))
  labels = [runs_lib.label(g[0]) for g in groups]
  assert labels == ['baseline', 'dlb']
  drawn = plots.plot_curves(groups, labels, [1.0, 2.0], str(tmp_path / 'curves.png'),
                            x='images')
  assert drawn == labels  # one legend entry, one line, per row
  assert (tmp_path / 'curves.png').read_bytes()[:8] == PNG_SIGNATURE
