"""A quick, real, offline run: a small ResNet on scikit-learn's digits (a few minutes on 2 CPU cores)."""
from configs import default


def get_config(arg=None):
  config = default.get_config(arg)
  config.dataset = 'digits'
  config.model = 'resnet18'
  config.width = 8
  config.stage_sizes = (1, 1, 1, 1)
  config.batch_size = 64
  config.eval_batch_size = 360
  config.num_epochs = 15
  # Fifteen epochs are half a restarts cycle: one warm-up and one cosine to 0.
  config.schedule = 'warmup_cosine'
  config.warmup_epochs = 1.0
  config.learning_rate = 0.05
  config.min_learning_rate = 0.0
  config.log_every_steps = 0
  return config
