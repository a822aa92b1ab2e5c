"""Row 1 of the results table: ResNet18, cross-entropy, no mixup (target 74.40 % top-1).

The study's configs/modules/resnet18.yaml (src/module.py ResNetModule): every
setting is configs/default.py's, which are the study's.
"""
from configs import default
from kdjax import study


def get_config(arg=None):
  config = default.get_config(arg)
  config.method = 'baseline'
  config.mixup_alpha = 0.0
  # The study trained in float32 (Lightning's precision 32), and so do its rows
  # here (XLA, like cuDNN, runs float32 convolutions in TF32 on Ampere and
  # later GPUs); --config.dtype=bfloat16 trains them in bfloat16.
  config.dtype = 'float32'
  return config


def distilled(method, teacher):
  """The baseline's recipe (no mixup, float32) with `method` learning from the
  study teacher named `teacher`, at the method's reference weights (its
  configs/default.py fields): the configs of the methods the field compares."""
  config = get_config()
  config.method = method
  config.teacher = study.teacher_directory(teacher)
  return config
