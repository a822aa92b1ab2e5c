"""KD + DOT (Zhao et al., ICCV 2023, distillation-oriented trainer) from a frozen teacher.

python main.py --config=configs/dot.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with mdistiller's KD loss and its
DOT trainer: configs/cifar100/dot/*.yaml (TRAINER dot, DOT.DELTA 0.075, KD
at engine/cfg.py's T 4, CE 0.1, KD 0.9; distillers/KD.py kd_loss, a batch
mean); the cross-entropy's gradient and KD's keep momentum buffers of
momentum -+ 0.075 (0.825 and 0.975). The yamls' SGD (lr 0.05 at batch 64,
weight decay 5e-4) is mdistiller's recipe; this config keeps the study's,
as every method config does (peak 0.1 at batch 128, weight decay 5e-4).
Any distillation config takes DOT with --config.optimizer=dot.
Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  config = baseline.distilled('offline', arg)
  config.kd_temperature, config.ce_weight, config.kd_weight = 4.0, 0.1, 0.9
  config.kd_reduction = 'batchmean'
  config.optimizer, config.dot_delta = 'dot', 0.075
  return config
