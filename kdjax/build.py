"""One build step: a config becomes everything a run needs.

`prepare(config, info)` settles what needs no data (the config's checks, the
teacher and its fit, once each); `assemble(plan, steps_per_epoch)` returns
the model, its apply functions, the method's loss, the schedule and
optimizer, the teacher and the device-mapped train and eval steps; `build`
does both. Training, the benchmark, the evaluation command and the tests all
start here. `load_config` resolves a
config spec ('configs/offline_kd.py:resnet50') as main.py's --config does.
"""
import dataclasses
import functools
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections.config_flags import config_flags
import optax

from kdjax import data
from kdjax import errors
from kdjax import fit
from kdjax import methods
from kdjax import models
from kdjax import optim
from kdjax import steps
from kdjax import teachers
from kdjax.data import feeds

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
AUTO = 'auto'  # config.dtype: bfloat16 on GPUs and TPUs, float32 on CPUs


def compute_dtype(dtype: str) -> str:
  """A config.dtype value, with AUTO resolved for the platform JAX runs on."""
  if dtype != AUTO:
    return dtype
  return 'float32' if jax.default_backend() == 'cpu' else 'bfloat16'


# config.steps_per_call 0: steps per call on accelerators, where one dispatch
# per step costs 0.15-0.4 ms of host time against a 1.5-3 ms step (estimated
# from the step's 170-521 argument leaves); a divisor of CIFAR-100's 390.
ACCELERATOR_STEPS_PER_CALL = 13


def steps_per_call(config, steps_per_epoch: int) -> int:
  """How many steps one mapped call runs: the largest divisor of the epoch's
  steps not above config.steps_per_call (0: 1 on CPUs, where XLA runs a step's
  gradient inside a loop about 4x slower, measured 117 against 29 ms; else
  ACCELERATOR_STEPS_PER_CALL), so calls tile every epoch and compile once."""
  wanted = config.steps_per_call or (
      1 if jax.default_backend() == 'cpu' else ACCELERATOR_STEPS_PER_CALL)
  return max(k for k in range(1, min(wanted, steps_per_epoch) + 1)
             if steps_per_epoch % k == 0)


def load_config(spec: str) -> ml_collections.ConfigDict:
  """The config of a spec 'path/to/file.py[:argument]': its get_config(argument),
  loaded by ml_collections exactly as main.py's --config loads it."""
  return config_flags.ConfigFileFlagParser('config', lock_config=False).parse(spec)


# Fields whose values must lie in a range: (fields, test, what to set).
_RANGES = (
    (('batch_size', 'eval_batch_size', 'num_epochs', 'width', 'lr_updates_per_epoch',
      'keep_checkpoints', 'crd_dim', 'crd_negatives', 'image_size', 'input_prefetch'),
     lambda v: isinstance(v, int) and v >= 1, 'set a whole number of at least 1.'),
    (('steps_per_call', 'log_every_steps', 'checkpoint_every_steps', 'seed', 'hint_stage',
      'profile_steps', 'dkd_warmup_epochs', 'reviewkd_warmup_epochs', 'input_workers',
      'train_examples', 'kdsvd_k'),
     lambda v: isinstance(v, int) and v >= 0, 'set a whole number of at least 0.'),
    (('learning_rate', 'min_learning_rate', 'weight_decay', 'warmup_epochs', 'mixup_alpha',
      'self_feature_weight', 'hint_weight', 'rkd_distance_weight', 'rkd_angle_weight',
      'online_weight', 'dkd_alpha', 'dkd_beta', 'dist_weight', 'dist_beta', 'dist_gamma',
      'at_weight', 'nst_weight', 'sp_weight', 'pkt_weight', 'vid_weight', 'reviewkd_weight',
      'ofd_weight', 'crd_weight', 'cs_kd_weight', 'tf_reg_alpha', 'tf_reg_multiplier',
      'dlb_weight', 'uskd_alpha', 'uskd_beta', 'uskd_mu', 'ttm_weight', 'nkd_gamma',
      'ctkd_t_start', 'ctkd_t_end', 'srd_feature_weight', 'srd_logit_weight', 'kdsvd_weight',
      'dot_delta'),
     lambda v: v >= 0, 'set a number of at least 0.'),
    (('kd_temperature', 'self_kd_temperature', 'online_temperature', 'restart_decay',
      'restart_epochs',
      'dkd_temperature', 'dist_temperature', 'at_p', 'decay_rate', 'vid_eps',
      'crd_temperature', 'cs_kd_temperature', 'tf_reg_temperature', 'dlb_temperature',
      'ttm_exponent', 'nkd_temperature', 'ctkd_lambda_epochs'),
     lambda v: v > 0, 'set a positive number.'),
    (('self_kd_weight', 'ps_kd_alpha'), lambda v: 0 <= v <= 1,
     'set a weight from 0 to 1 (it splits the loss with the cross-entropy).'),
    (('tf_reg_correct_prob',), lambda v: 0 < v < 1, 'set a probability between 0 and 1.'),
    (('momentum', 'crd_momentum'), lambda v: 0 <= v < 1,
     'set a momentum from 0 up to, not including, 1.'),
    (('rotation_degrees',), lambda v: 0 <= v <= 180, 'set an angle from 0 to 180 degrees.'),
)


def check_config(config: ml_collections.ConfigDict, num_devices: int) -> methods.Method:
  """The config's method, once every field that needs no data holds a value its
  run can use; else a errors.ConfigError naming the field and what to set."""
  for fields, test, fix in _RANGES:
    for field in fields:
      if not test(config[field]):
        raise errors.ConfigError(field, config[field], fix)
  if config.batch_size % num_devices:
    raise errors.ConfigError('batch_size', config.batch_size, f'it must divide evenly over '
                             f'the {num_devices} devices; set a multiple of {num_devices}.')
  if config.ce_weight is None and not 0 <= config.kd_weight <= 1:
    raise errors.ConfigError('kd_weight', config.kd_weight, 'set a weight from 0 to 1 (it '
                             'splits the loss with the cross-entropy), or set ce_weight too.')
  if config.ce_weight is not None and not (config.ce_weight >= 0 and config.kd_weight >= 0):
    raise errors.ConfigError('ce_weight' if config.ce_weight < 0 else 'kd_weight',
                             min(config.ce_weight, config.kd_weight),
                             'set a number of at least 0.')
  if config.vid_init_variance <= config.vid_eps:
    raise errors.ConfigError('vid_init_variance', config.vid_init_variance,
                             f'set a variance above vid_eps ({config.vid_eps}).')
  if any(not isinstance(n, int) or n < 1 for n in config.sdd_scales) or not config.sdd_scales:
    raise errors.ConfigError('sdd_scales', tuple(config.sdd_scales), 'give region scales of '
                             'at least 1, the global one first (SDD: "(1, 2)" or "(1, 2, 4)").')
  if config.dot_delta >= config.momentum or config.momentum + config.dot_delta >= 1:
    raise errors.ConfigError('dot_delta', config.dot_delta, f'DOT\'s momenta are momentum '
                             f'({config.momentum}) - and + dot_delta; set it so both lie in '
                             '[0, 1) (mdistiller: 0.075 at momentum 0.9).')
  if config.min_learning_rate > config.learning_rate:
    raise errors.ConfigError('min_learning_rate', config.min_learning_rate,
                             f'set it at most learning_rate ({config.learning_rate}).')
  if any(not isinstance(n, int) or n < 1 for n in config.stage_sizes):
    raise errors.ConfigError('stage_sizes', tuple(config.stage_sizes),
                             'give each stage at least 1 block, or () for the model\'s own.')
  optim.check_schedule(config)
  for field, choices in (('dataset', data.DATASETS), ('dtype', (*DTYPES, AUTO)),
                         ('teacher_dtype', (*DTYPES, AUTO)),
                         ('teacher_bn', teachers.BN_MODES),
                         ('teacher_input', TEACHER_INPUTS),
                         ('input_pipeline', feeds.PIPELINES),
                         ('mixup_partner', steps.MIXUP_PARTNERS),
                         ('optimizer', optim.OPTIMIZERS),
                         ('kd_reduction', methods.KD_REDUCTIONS),
                         ('head_labels', methods.HEAD_LABELS),
                         ('self_feature_reduction', methods.FEATURE_REDUCTIONS)):
    methods.check_choice(config, field, choices)
  methods.check_choice(config, 'stem', (methods.AUTO_STEM, *models.STEMS))
  if config.stem not in (methods.AUTO_STEM, 'cifar') and config.model not in models.STEM_MODELS:
    raise errors.ConfigError('stem', config.stem, f'{config.model} has one layout; set '
                             f"'{methods.AUTO_STEM}', or model to one of "
                             f'{list(models.STEM_MODELS)}.')
  for name in (config.model, *config.peers):
    if name not in models.NAMES:
      raise errors.ConfigError('model' if name == config.model else 'peers', name,
                               f'name one of {list(models.NAMES)}.')
    stages = models.fixed_stage_count(name)
    if config.stage_sizes and stages and len(config.stage_sizes) != stages:
      raise errors.ConfigError('stage_sizes', tuple(config.stage_sizes),
                               f'{name} has {stages} stages; give {stages} block counts, '
                               'or () for its own.')
  if config.input_pipeline == 'device' and config.dataset == data.IMAGENET:
    raise errors.ConfigError('input_pipeline', 'device', f'{data.IMAGENET} does not fit on '
                             "a device; set 'stream' or 'auto'.")
  try:
    method = methods.get_method(config.method)
  except ValueError as e:
    raise errors.ConfigError('method', config.method, str(e)) from None
  method.check(config)
  if config.optimizer == 'dot' and (not method.terms or method.carries_ce):
    raise errors.ConfigError('optimizer', 'dot', f'DOT steps the cross-entropy\'s gradient '
                             'and the distillation terms\' apart; method '
                             f'{config.method!r} has ' + ('no terms' if not method.terms else
                                                          'a term that holds the '
                                                          'cross-entropy') +
                             ". set 'sgd', or a method with a distillation term.")
  if 'kdsvd' in method.terms and num_devices > 1 and jax.default_backend() == 'cpu':
    raise errors.ConfigError('method', config.method, 'KDSVD\'s SVD is a LAPACK call, which '
                             'XLA:CPU runs in the thread pool that a multi-device step\'s '
                             'collectives wait in: the step deadlocks. Train it on one CPU '
                             'device (--xla_force_host_platform_device_count=1) or on GPUs '
                             'or TPUs.')
  if config.optimizer == 'dot' and config.nesterov:
    raise errors.ConfigError('nesterov', True, 'DOT\'s buffers are plain momentum '
                             '(mdistiller/engine/dot.py); set it to False.')
  return method


TEACHER_INPUTS = ('student', 'own')  # config.teacher_input: whose normalization


def load_teacher(config, info: data.DatasetInfo) -> teachers.Teacher:
  """config.teacher in its compute dtype and the form its BatchNorm mode needs."""
  return teachers.load(config.teacher, DTYPES[compute_dtype(config.teacher_dtype)],
                       info.num_classes, info.name, bn=config.teacher_bn)


def teacher_apply(config, teacher: teachers.Teacher, info: data.DatasetInfo) -> Callable:
  """The teacher's `apply(variables, pixels) -> outputs` as config sets it: its
  BatchNorm mode, and the student's normalization (info's) or its own."""
  return steps.make_teacher_apply(
      teacher, config.teacher_bn,
      (info.mean, info.std) if config.teacher_input == 'student' else None)


def create_model(config, num_classes: int, hint_channels: Sequence[int] = ()):
  """The trained model (config.model, or a cohort with config.peers), mapped
  over steps.AXIS so that BatchNorm statistics cover the global batch."""
  name, kwargs = methods.get_method(config.method).model_spec(config, hint_channels)
  return models.get_model(name, num_classes=num_classes,
                          dtype=DTYPES[compute_dtype(config.dtype)], axis_name=steps.AXIS,
                          **kwargs)


@dataclasses.dataclass(frozen=True)
class Run:
  """What `build` returns: the pieces of one run of a config."""
  config: ml_collections.ConfigDict
  method: methods.Method
  model: Any  # flax module, mapped over steps.AXIS
  model_spec: Tuple[str, Dict[str, Any]]  # (name, kwargs), as model.json records it
  image_shape: Tuple[int, ...]
  dtype: str  # the compute dtype, config.dtype resolved
  steps_per_call: int  # train steps per mapped call
  apply: Callable  # (params, batch_stats, pixels, train) -> (outputs, batch_stats)
  loss_fn: Callable  # methods.get_loss_fn's
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  teacher: Optional[teachers.Teacher]
  devices: Sequence[Any]  # what the steps map over: every process's devices
  train_steps: Callable  # steps.pmap_train_steps's
  eval_step: Callable  # steps.pmap_eval_step's
  # key -> the variables of the method's learned parts (methods.init_parts), or
  # None for a method without any.
  init_parts: Optional[Callable[[jax.Array], Dict[str, Any]]] = None

  def init_state(self, key: jax.Array) -> steps.TrainState:
    """The initial train state (on the default device) from `key`: the
    student's variables, and the method's parts under methods.PARTS."""
    # In eval mode BatchNorm reads no batch statistics, so no device axis is needed.
    variables = jax.jit(functools.partial(self.model.init, train=False))(
        key, jnp.zeros((1, *self.image_shape), jnp.float32))
    params, batch_stats = variables['params'], variables['batch_stats']
    if self.init_parts:
      parts = self.init_parts(jax.random.fold_in(key, 1))
      if parts['params']:
        params = {**params, methods.PARTS: parts['params']}
      if parts['batch_stats']:
        batch_stats = {**batch_stats, methods.PARTS: parts['batch_stats']}
    return steps.TrainState.create(apply_fn=self.model.apply, params=params,
                                   batch_stats=batch_stats, tx=self.tx)


def parts_initializer(config, model, teacher, info: data.DatasetInfo,
                      num_train: int) -> Callable:
  """init(key) -> the variables of the method's learned parts for the run's
  shapes (the student's and the teacher's, if any, outputs on a batch of
  `info`'s images) and a training set of `num_train` examples."""
  pixels = jax.ShapeDtypeStruct((2, *info.image_shape), jnp.float32)
  student = jax.eval_shape(lambda x: model.init_with_output(
      jax.random.PRNGKey(0), x, train=False)[0], pixels)
  taught = teacher and jax.eval_shape(functools.partial(teacher.model.apply, train=False),
                                      teacher.variables, pixels)
  zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), tree)
  return jax.jit(lambda key: methods.init_parts(
      config, key, zeros(student), zeros(taught), jnp.zeros((2, info.num_classes)),
      num_train, teacher_variables=teacher and zeros(teacher.variables)))


@dataclasses.dataclass(frozen=True)
class Plan:
  """What a run of a config is, settled before any data: the checked config
  and its method, the dataset's description, the devices, the teacher (fit
  for the method) and each student's FitNets regressor width."""
  config: ml_collections.ConfigDict
  method: methods.Method
  info: data.DatasetInfo
  devices: Sequence[Any]
  teacher: Optional[teachers.Teacher]
  hint_channels: Tuple[int, ...]


def prepare(config: ml_collections.ConfigDict, info: data.DatasetInfo,
            devices: Optional[Sequence[Any]] = None,
            teacher: Optional[teachers.Teacher] = None) -> Plan:
  """Checks `config` for a dataset described by `info` and steps mapped over
  `devices` (default: every process's); a method with a teacher loads
  config.teacher unless `teacher` is given (a method without one ignores it),
  and the teacher's fit is checked once. Reads no data and writes nothing."""
  devices = list(devices or jax.devices())
  method = check_config(config, len(devices))
  channels = ()
  if not method.uses_teacher:
    teacher = None
  else:
    teacher = teacher or load_teacher(config, info)
    channels = fit.check(config, method, teacher, info)
  return Plan(config, method, info, devices, teacher, channels)


def assemble(plan: Plan, steps_per_epoch: int, num_train: int = 0) -> Run:
  """Everything a run of `plan` needs. `num_train`, the training set's size,
  sizes what a method keeps per training example (CRD's and PS-KD's memories;
  0: steps_per_epoch x batch_size)."""
  config, method, info, devices, teacher = (plan.config, plan.method, plan.info, plan.devices,
                                            plan.teacher)
  model = create_model(config, info.num_classes, plan.hint_channels)
  apply = steps.make_apply(model, info.mean, info.std)
  loss_fn = methods.get_loss_fn(config, functools.partial(apply, train=True),
                                teacher and teacher_apply(config, teacher, info), steps.AXIS,
                                steps_per_epoch)
  schedule = optim.create_schedule(config, steps_per_epoch)
  return Run(
      config=config, method=method, model=model,
      model_spec=method.model_spec(config, plan.hint_channels), image_shape=info.image_shape,
      dtype=compute_dtype(config.dtype), steps_per_call=steps_per_call(config, steps_per_epoch),
      apply=apply, loss_fn=loss_fn, schedule=schedule,
      tx=(optim.dot(schedule, config.momentum, config.dot_delta, config.weight_decay)
          if config.optimizer == 'dot' else
          optim.create_optimizer(schedule, config.momentum, config.weight_decay,
                                 config.nesterov)),
      teacher=teacher, devices=devices,
      init_parts=(parts_initializer(config, model, teacher, info,
                                    num_train or steps_per_epoch * config.batch_size)
                  if method.uses_parts else None),
      train_steps=steps.pmap_train_steps(
          loss_fn, augment=config.augment, rotation_degrees=config.rotation_degrees,
          mixup=bool(config.mixup_alpha), mixup_partner=config.mixup_partner,
          num_classes=info.num_classes, devices=devices, groups=method.groups,
          crop=not info.encoded, strong_view=method.composition == 'views',
          two_gradients=config.optimizer == 'dot'),
      eval_step=steps.pmap_eval_step(apply, method, devices))


def build(config: ml_collections.ConfigDict, info: data.DatasetInfo, steps_per_epoch: int,
          devices: Optional[Sequence[Any]] = None,
          teacher: Optional[teachers.Teacher] = None, num_train: int = 0) -> Run:
  """prepare, then assemble: everything a run of `config` on a dataset
  described by `info` needs, with steps mapped over `devices`."""
  return assemble(prepare(config, info, devices, teacher), steps_per_epoch, num_train)
