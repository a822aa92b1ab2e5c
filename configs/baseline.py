"""Row 1 of the results table: ResNet18, cross-entropy, no mixup (target 74.40 % top-1)."""
from configs import default


def get_config(arg=None):
  config = default.get_config(arg)
  config.method = 'baseline'
  config.model = 'resnet18'
  config.dataset = 'cifar100'
  config.batch_size = 128
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.num_epochs = 200
  config.warmup_epochs = 5.0
  config.seed = 0
  return config
