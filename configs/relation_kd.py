"""Relation-based offline KD: RKD distance and angle losses from a frozen teacher, with mixup.

python main.py --config=configs/relation_kd.py:resnet50  (or :repvgg_a0)
Add intermediate heads with --config.method=relation_self.
"""
from configs import offline_kd


def get_config(arg=None):
  config = offline_kd.get_config(arg)  # the same teacher and mixup
  config.dtype = 'auto'  # not a row of the study: bfloat16 on accelerators
  config.method = 'relation'
  return config
