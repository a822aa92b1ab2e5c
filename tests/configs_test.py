"""Every config in configs/ is complete and trains: no config rots."""
import os

import jax
import numpy as np
import pytest

from configs import baseline
from configs import default
from configs import offline_kd
from kdjax import build
from kdjax import data
from kdjax import methods
from kdjax import steps
from kdjax import study
from tiny import first
from tiny import random_teacher
from tiny import step
from tiny import train_on_mock_cifar

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, 'configs'))
                 if f.endswith('.py') and f != '__init__.py')
# Method zoo part 3's configs.
ZOO = ('ttm', 'wttm', 'nkd', 'mlkd', 'ctkd', 'dot', 'sdd', 'sdd_dkd', 'srd', 'kdsvd')
# Configs that take an argument (configs/<file>:<arg>), with every argument they accept.
TEACHER_CONFIGS = ('offline_kd.py', 'offline_kd_no_mixup.py', 'offline_self_kd.py',
                   'feature_kd.py', 'relation_kd.py', *(f'{name}.py' for name in (
                       'dkd', 'dist', 'at', 'sp', 'pkt', 'nst', 'offline_kd_ls', 'vid',
                       'ofd', 'reviewkd', 'crd', *ZOO)))
# The methods the field compares against, also run with the study's heads.
INFO = data.DatasetInfo('random', 10, (32, 32, 3), (0.5, 0.4, 0.3), (0.25, 0.25, 0.3))
# (Those with learned parts train with the heads in learned_parts_test.)
WITH_HEADS = ('dkd.py', 'dist.py', 'at.py', 'sp.py', 'pkt.py', 'nst.py', 'offline_kd_ls.py')
ARGS = {**{name: sorted(study.TEACHERS) for name in TEACHER_CONFIGS},
        'online_kd.py': ['resnet18', 'repvgg_a0', 'resnet18,resnet18'],
        'tf_kd_self.py': sorted(study.TEACHERS),
        'imagenet.py': [r.name for r in study.IMAGENET_ROWS],
        'fashion_mnist.py': [f'{row}{size}' for row in (
            'offline_self_kd', 'teacher', *(r.name for r in study.FASHION_MNIST_ROWS))
                             for size in ('', ',full')]}


def _get_config(name, arg):
  module = {}
  with open(os.path.join(ROOT, 'configs', name)) as f:
    exec(compile(f.read(), name, 'exec'), module)  # pylint: disable=exec-used
  return module['get_config'](arg)


@pytest.mark.parametrize('name,arg', [(n, a) for n in CONFIGS for a in ARGS.get(n, [None])])
def test_every_config_has_exactly_the_default_fields(name, arg):
  config = _get_config(name, arg)
  assert set(config.keys()) == set(default.get_config().keys())
  if name in TEACHER_CONFIGS:
    assert config.teacher == study.TEACHERS[arg].directory
  if name == 'online_kd.py':
    assert config.peers == tuple(arg.split(','))


# imagenet.py's rows train on a miniature ImageNet in imagenet_test; the zoo's
# configs an epoch of digits through main.py on one device in zoo_test.
@pytest.mark.parametrize('name', [c for c in CONFIGS
                                  if c != 'imagenet.py' and c[:-3] not in ZOO])
def test_every_config_runs_a_step_of_a_tiny_variant(name, cifar_teacher, tmp_path):
  # Online configs run with their first argument, a ResNet18 peer of the same tiny shape.
  config = _get_config(name, ARGS.get(name, [None])[0])
  if config.teacher:
    config.teacher = cifar_teacher
  config.update({'dataset': 'cifar100', 'width': 4, 'stage_sizes': (1, 1, 1, 1),
                 'batch_size': 16, 'eval_batch_size': 16, 'num_epochs': 1,
                 'warmup_epochs': 0.0})
  summary = train_on_mock_cifar(config, tmp_path, num_examples=16)
  assert summary['epochs_completed'] == 1 and np.isfinite(summary['final_top1'])
  assert ('teacher_top1' in summary) == bool(config.teacher)
  assert os.listdir(tmp_path / 'checkpoints') == ['1']  # one step was trained


COMPARED = {'ps_kd': 'pskd', 'cs_kd': 'cskd', 'tf_kd_reg': 'tfkdreg', 'dlb': 'dlb',
            'uskd': 'uskd'}


@pytest.mark.parametrize('row', ['teacher', *(r.name for r in study.FASHION_MNIST_ROWS)])
@pytest.mark.parametrize('size', ['', 'full'])
def test_fashion_mnist_rows_are_the_studys_with_only_the_documented_changes(row, size):
  config = _get_config('fashion_mnist.py', f'{row},{size}' if size else row)
  spec = next((r.config for r in study.ROWS if r.name in (row, f'{row}_repvgg_a0')),
              'configs/baseline.py')
  cifar = build.load_config(spec)
  if row in COMPARED:  # the baseline's recipe with the method's loss
    cifar.method = COMPARED[row]
  changed = {k for k in cifar.keys() if cifar[k] != config[k]}
  assert changed <= {'dataset', 'width', 'model', 'num_epochs', 'lr_updates_per_epoch',
                     'restart_epochs', 'warmup_epochs', 'teacher'}
  assert config.dataset == 'fashion_mnist'
  # The study's 200 epochs and schedule, every length divided alike.
  scale = 200 // config.num_epochs
  assert (config.num_epochs, config.lr_updates_per_epoch) == ((10, 20) if not size else (20, 10))
  assert (config.restart_epochs * scale, config.warmup_epochs * scale) == (30, 1)
  student = next((r for r in study.STUDIES['fashion_mnist_full' if size else 'fashion_mnist']
                  .rows if r.name == row), None)
  if student:
    assert (config.model, config.width) == ('resnet18', student.width)
    assert config.teacher == (study.FASHION_MNIST_TEACHER if student.teacher else '')
  else:
    assert (config.model, config.width) == (('resnet50', 64) if size else ('resnet18', 16))


@pytest.mark.parametrize('arg,message', [
    (None, r"No teacher named: name one of \['repvgg_a0', 'resnet18_imagenet', "
           r"'resnet34_imagenet', 'resnet50', 'resnet50_imagenet'\] after the config"),
    ('vgg8', r"Unknown teacher 'vgg8'.*or set --config.teacher to any teacher directory"),
])
def test_a_teacher_config_without_a_known_teacher_is_a_clear_error(arg, message):
  with pytest.raises(ValueError, match=message):
    offline_kd.get_config(arg)


@pytest.mark.parametrize('name', WITH_HEADS)
def test_each_compared_method_steps_with_the_studys_heads_on_one_device(name):
  config = _get_config(name, 'resnet50')
  config.update({'method': f'{config.method}_self', 'width': 4, 'stage_sizes': (1, 1, 1, 1),
                 'batch_size': 8, 'mixup_alpha': 0.4})
  devices = jax.devices()[:1]
  teacher = random_teacher()
  run = build.build(config, INFO, 1, devices, teacher)
  start = run.init_state(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  state, images, labels, key, teacher_variables = steps.replicate((
      start, rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
      rng.integers(0, 10, 8).astype(np.int32), jax.random.PRNGKey(1), teacher.variables),
                                                                  devices)
  state, metrics = step(run, state, images, labels, np.arange(8)[None], key, teacher_variables)
  assert np.isfinite(first(metrics)['loss'])
  # The heads learn (and so, through the step, from the method's teacher term too).
  for head in ('head1', 'head2', 'head3'):
    assert not np.array_equal(first(state).params[head]['classifier']['kernel'],
                              start.params[head]['classifier']['kernel'])


# mdistiller's configs/imagenet/r34_r18/{kd,at,crd,reviewkd,dkd}.yaml (SOLVER and
# each method's block), with its engine/cfg.py's defaults where a yaml is silent.
MDISTILLER_R34_R18 = {
    'kd': {'batch_size': 512, 'learning_rate': 0.2, 'ce_weight': 0.5, 'kd_weight': 0.5,
           'kd_temperature': 1.0, 'kd_reduction': 'batchmean'},
    'at': {'batch_size': 512, 'learning_rate': 0.2, 'at_weight': 1000.0, 'at_p': 2.0},
    'crd': {'batch_size': 256, 'learning_rate': 0.1, 'crd_weight': 0.8, 'crd_dim': 128,
            'crd_negatives': 16384, 'crd_temperature': 0.07, 'crd_momentum': 0.5},
    'reviewkd': {'batch_size': 256, 'learning_rate': 0.1, 'reviewkd_weight': 1.0,
                 'reviewkd_warmup_epochs': 1, 'reviewkd_student_preact': True},
    'dkd': {'batch_size': 512, 'learning_rate': 0.2, 'dkd_alpha': 1.0, 'dkd_beta': 0.5,
            'dkd_temperature': 1.0, 'dkd_warmup_epochs': 1},
}
MDISTILLER_SOLVER = {'num_epochs': 100, 'schedule': 'step', 'decay_epochs': (30, 60, 90),
                     'decay_rate': 0.1, 'warmup_epochs': 0.0, 'weight_decay': 1e-4,
                     'momentum': 0.9, 'nesterov': False, 'mixup_alpha': 0.0,
                     'teacher_bn': 'running', 'rotation_degrees': 0.0}


@pytest.mark.parametrize('row', list(MDISTILLER_R34_R18))
def test_imagenet_rows_hold_mdistillers_r34_r18_settings(row):
  config = _get_config('imagenet.py', row)
  for field, value in {**MDISTILLER_SOLVER, **MDISTILLER_R34_R18[row]}.items():
    assert config[field] == value, field
  assert (config.dataset, config.model, config.stem) == ('imagenet2012', 'resnet18', 'auto')
  assert config.teacher == study.TEACHERS['resnet34_imagenet'].directory
  # Every method but KD keeps the cross-entropy at weight 1 (CE_WEIGHT 1.0).
  method = methods.get_method(config.method)
  assert methods.ce_weight(method.terms, config) == (0.5 if row == 'kd' else 1.0)


def test_imagenet_self_distillation_rows_are_the_studys_on_mdistillers_recipe():
  for row, cifar in (('self_kd', _get_config('self_kd.py', None)),
                     ('offline_self_kd', _get_config('offline_self_kd.py', 'resnet34_imagenet'))):
    config = _get_config('imagenet.py', row)
    recipe = {**MDISTILLER_SOLVER, 'batch_size': 512, 'learning_rate': 0.2,
              'mixup_alpha': 0.4}
    changed = {'dataset', 'dtype', 'teacher_dtype', 'checkpoint_every_steps', *recipe}
    assert {k: config[k] for k in recipe} == recipe
    assert {k: v for k, v in config.items() if k not in changed} == {
        k: v for k, v in cifar.items() if k not in changed}


# Method zoo part 3: each config's settings, transcribed from the file its
# docstring names (the loss's weights; the recipe stays the study's).
ZOO_REFERENCES = {
    # zkxufo/TTM README: --distill ttm --ttm_l 0.1 -r 1 -b 45; WTTM --ttm_l 0.2 -a 4.
    'ttm': {'method': 'ttm', 'ttm_exponent': 0.1, 'ttm_weight': 45.0, 'ce_weight': None},
    'wttm': {'method': 'wttm', 'ttm_exponent': 0.2, 'ttm_weight': 4.0, 'ce_weight': None},
    # cls_KD res34_distill_res18_cifar.py: NKDLoss temp 3.0, gamma 3.5.
    'nkd': {'method': 'nkd', 'nkd_temperature': 3.0, 'nkd_gamma': 3.5, 'ce_weight': None},
    # CTKD run_cifar_distill.sh: -r 0.1 -a 0.9 --t_start 1 --t_end 20 --decay_max 0
    # --decay_min -1 --decay_loops 10.
    'ctkd': {'method': 'ctkd', 'ce_weight': 0.1, 'kd_weight': 0.9, 'ctkd_t_start': 1.0,
             'ctkd_t_end': 20.0, 'ctkd_lambda_epochs': 10},
    # MLKD: mdistiller/engine/cfg.py's KD (its cifar100/ours yamls set none).
    'mlkd': {'method': 'mlkd', 'kd_temperature': 4.0, 'ce_weight': 0.1, 'kd_weight': 0.9},
    # mdistiller configs/cifar100/dot/*.yaml: TRAINER dot, DELTA 0.075; cfg.py's KD.
    'dot': {'method': 'offline', 'optimizer': 'dot', 'dot_delta': 0.075, 'momentum': 0.9,
            'kd_temperature': 4.0, 'ce_weight': 0.1, 'kd_weight': 0.9,
            'kd_reduction': 'batchmean'},
    # SDD-CVPR2024 SDD_KD (cfg.py's KD), M [1,2]; SDD_DKD (cfg.py's DKD), M [1,2,4].
    'sdd': {'method': 'sdd', 'kd_temperature': 4.0, 'ce_weight': 0.1, 'kd_weight': 0.9,
            'sdd_scales': (1, 2)},
    'sdd_dkd': {'method': 'sdddkd', 'dkd_alpha': 1.0, 'dkd_beta': 8.0, 'dkd_temperature': 4.0,
                'dkd_warmup_epochs': 20, 'sdd_scales': (1, 2, 4), 'ce_weight': None},
    # SRD_ossl helper/loops.py 'srd': statm_loss + F.mse_loss, each weight 1.
    'srd': {'method': 'srd', 'srd_feature_weight': 1.0, 'srd_logit_weight': 1.0,
            'ce_weight': None},
    # mdistiller engine/cfg.py KDSVD: K 1, CE 1, FEAT 1.
    'kdsvd': {'method': 'kdsvd', 'kdsvd_k': 1, 'kdsvd_weight': 1.0, 'ce_weight': None},
}


@pytest.mark.parametrize('name', ZOO)
def test_zoo_configs_hold_their_references_settings_on_the_studys_recipe(name):
  config = _get_config(f'{name}.py', 'resnet50')
  for field, value in ZOO_REFERENCES[name].items():
    assert config[field] == value, field
  recipe = baseline.get_config()
  for field in ('num_epochs', 'batch_size', 'learning_rate', 'schedule', 'weight_decay',
                'rotation_degrees', 'dtype'):
    assert config[field] == recipe[field], field
  method = methods.get_method(config.method)
  assert config.mixup_alpha == 0.0 and config.teacher == study.TEACHERS['resnet50'].directory
  # The cross-entropy weighs 1 unless the reference sets it.
  assert methods.ce_weight(method.terms, config) == (config.ce_weight or 1.0)


def test_mlkd_adds_the_references_temperatures_to_the_configs():
  from kdjax.methods import response  # pylint: disable=g-import-not-at-top
  assert response.MLKD_TEMPERATURES == (3.0, 5.0, 2.0, 6.0)  # KD_ours.py's, after T


# The zoo's ImageNet rows: their references' ImageNet files.
ZOO_IMAGENET = {
    # cls_KD res34_distill_res18_img.py (temp 1, gamma 1.5) on its mmcls recipe
    # resnet18_8xb32_in1k.py / imagenet_bs256.py (batch 256, lr 0.1).
    'nkd': {'nkd_temperature': 1.0, 'nkd_gamma': 1.5, 'batch_size': 256,
            'learning_rate': 0.1, 'num_epochs': 100},
    # Multi-Level-Logit-Distillation configs/imagenet/r34_r18/kd_ours.yaml.
    'mlkd': {'kd_temperature': 1.0, 'ce_weight': 0.5, 'kd_weight': 0.5, 'batch_size': 512,
             'learning_rate': 0.1, 'num_epochs': 100},
    # mdistiller configs/imagenet/r34_r18/dot.yaml.
    'dot': {'optimizer': 'dot', 'dot_delta': 0.09, 'kd_temperature': 1.0, 'ce_weight': 0.5,
            'kd_weight': 0.5, 'batch_size': 512, 'learning_rate': 0.2, 'num_epochs': 100},
    # CTKD scripts/run_imagenet_distill.sh.
    'ctkd': {'num_epochs': 120, 'batch_size': 256, 'learning_rate': 0.1, 'ce_weight': 1.0,
             'kd_weight': 1.0, 'ctkd_lambda_epochs': 5, 'ctkd_t_start': 1.0,
             'ctkd_t_end': 20.0},
    # SDD-CVPR2024 configs/imagenet/r34_r18/sdd_dkd.yaml (its batch 4 aside).
    'sdd_dkd': {'dkd_alpha': 1.0, 'dkd_beta': 0.5, 'dkd_temperature': 1.0,
                'dkd_warmup_epochs': 1, 'sdd_scales': (1, 2), 'batch_size': 512,
                'learning_rate': 0.2, 'num_epochs': 100},
    # KD_SRRL train_imagenet_distillation.py: lr 0.2, 100 epochs, batch 512, wd
    # 1e-4, steps at 30, 60, 90, weight 1.
    'srd': {'srd_feature_weight': 1.0, 'srd_logit_weight': 1.0, 'batch_size': 512,
            'learning_rate': 0.2, 'num_epochs': 100},
}


@pytest.mark.parametrize('row', list(ZOO_IMAGENET))
def test_imagenet_zoo_rows_hold_their_references_settings(row):
  config = _get_config('imagenet.py', row)
  solver = {k: v for k, v in MDISTILLER_SOLVER.items() if k != 'num_epochs'}
  for field, value in {**solver, **ZOO_IMAGENET[row]}.items():
    assert config[field] == value, field
  assert config.teacher == study.TEACHERS['resnet34_imagenet'].directory
