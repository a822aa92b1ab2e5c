"""Every config field, with its default. Experiment configs start from this one."""
import ml_collections


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
  config.width = 64  # channels of the first stage; later stages double it
  config.stage_sizes = ()  # blocks per stage; () = the architecture's own (2, 2, 2, 2) for resnet18
  config.dtype = 'float32'  # compute dtype, 'float32' or 'bfloat16'; params stay float32

  # Method.
  config.method = 'baseline'  # a name in kdjax.methods

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
  config.keep_checkpoints = 2  # the last N epochs' checkpoints are kept, plus the best

  return config
