"""Every config field, with its default. Experiment configs start from this one."""
import ml_collections


# The study's teachers, as configs/offline_kd.py:<name> names them, and the
# directories their converted weights are read from.
TEACHERS = {'repvgg_a0': 'teachers/repvgg_a0', 'resnet50': 'teachers/resnet50'}


def teacher_dir(name):
  if name not in TEACHERS:
    problem = 'No teacher named' if name is None else f'Unknown teacher {name!r}'
    raise ValueError(f'{problem}: name one of {sorted(TEACHERS)} after the '
                     'config file (e.g. configs/offline_kd.py:resnet50), or set '
                     '--config.teacher to any teacher directory.')
  return TEACHERS[name]


def get_config(arg=None):
  del arg
  config = ml_collections.ConfigDict()

  # Data.
  config.dataset = 'cifar100'  # 'cifar100' (tensorflow-datasets) or 'digits' (scikit-learn, offline)
  config.data_dir = ''  # TFDS data_dir; '' = TFDS's default (~/tensorflow_datasets)
  config.manual_dir = ''  # folder holding a pre-downloaded cifar-100-binary.tar.gz
  config.augment = True  # zero-pad 4 + random crop + horizontal flip on training images

  # Model.
  config.model = 'resnet18'  # a name in kdjax.models
  # ResNet: channels of the first stage, later ones double it; RepVGG: base width (A0: 64).
  config.width = 64
  config.stage_sizes = ()  # blocks per stage; () = the architecture's own (2, 2, 2, 2) for resnet18
  config.dtype = 'float32'  # compute dtype, 'float32' or 'bfloat16'; params stay float32

  # Method. The study gives no distillation hyper-parameters; each default below
  # names its source.
  # 'baseline', or terms of kdjax.methods.TERMS joined by '_': 'offline', 'feature',
  # 'relation', 'online', 'self', 'offline_self', 'feature_self', 'online_self', ...
  config.method = 'baseline'
  # offline, feature, relation: a teacher directory (a kdjax workdir or converted weights)
  config.teacher = ''
  config.mixup_alpha = 0.0  # mixup with lam ~ Beta(alpha, alpha) on every batch; 0 = off
  # offline: (1 - w) * CE + w * T^2 KL(teacher || student); w = 0.9, T = 4 is the
  # KD recipe of RepDistiller (Tian et al., 2020).
  config.kd_weight = 0.9
  config.kd_temperature = 4.0
  # self: Be Your Own Teacher's reference code (train.py defaults): each head gets
  # (1 - w) * CE + w * T^2 KL from the final logits + beta * L2 to the final feature.
  config.self_kd_weight = 0.1  # its alpha
  config.self_kd_temperature = 3.0  # its temperature
  # Its beta = 1e-6 multiplies an L2 summed over its batch of 128; kdjax's L2 is a
  # batch mean, so the same pull is 128 * 1e-6.
  config.self_feature_weight = 1.28e-4
  # feature: CE + beta * MSE(regressor(student stage), teacher stage), FitNets as
  # RepDistiller runs it (hint_layer 2 = the output of stage index 1, beta = 100).
  # The teacher stage is the deepest one with the same grid.
  config.hint_stage = 1  # the student stage (0 = first) whose output is regressed
  config.hint_weight = 100.0
  # relation: CE + w_d * RKD distance + w_a * RKD angle on the pooled features of
  # the global batch; RepDistiller's RKDLoss weights.
  config.rkd_distance_weight = 25.0
  config.rkd_angle_weight = 50.0
  # online: every student (config.model and each of config.peers) adds
  # w * mean over the others of T^2 KL(other || itself); Deep Mutual Learning's
  # w = 1, T = 1. Students share width and stage_sizes, each is checkpointed and
  # evaluated, and config.model's accuracy is the run's headline.
  config.peers = ()  # model names, e.g. ('repvgg_a0',)
  config.online_weight = 1.0
  config.online_temperature = 1.0

  # Optimization.
  config.batch_size = 128  # global batch, split evenly over all devices
  config.eval_batch_size = 500  # global; the test split is padded and masked, never cut
  config.num_epochs = 200
  config.warmup_epochs = 5.0  # linear warm-up from 0, then cosine to 0, stepped per iteration
  config.learning_rate = 0.1  # peak learning rate
  config.momentum = 0.9
  config.weight_decay = 5e-4  # as torch.optim.SGD(weight_decay=...): on every parameter
  config.seed = 0  # initialization, data order and augmentation

  # Output.
  config.log_every_steps = 100  # a progress line every N steps within an epoch; 0 = off
  config.keep_checkpoints = 2  # the last N checkpoints are kept, plus the best epoch's
  # Also checkpoint every N steps within an epoch (0 = at epoch ends only), so a
  # preempted run loses at most N steps; SIGTERM always saves the current step.
  config.checkpoint_every_steps = 0

  return config
