"""Online distillation: Deep Mutual Learning, ResNet18 and a peer trained together, with mixup.

python main.py --config=configs/online_kd.py:repvgg_a0  (ResNet18 + RepVGG-A0)
python main.py --config=configs/online_kd.py:resnet18   (two ResNet18s, as in the paper)
Add intermediate heads with --config.method=online_self.
"""
from configs import baseline


def get_config(arg=None):
  config = baseline.get_config()
  config.method = 'online'
  config.dtype = 'auto'  # not a row of the study: bfloat16 on accelerators
  config.peers = tuple((arg or 'repvgg_a0').split(','))  # several: repvgg_a0,resnet18
  config.mixup_alpha = 0.4  # as the study mixes its distillation rows
  return config
