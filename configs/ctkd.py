"""KD + CTKD (Li et al., AAAI 2023, curriculum temperature) from a frozen teacher.

python main.py --config=configs/ctkd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights: zhengli97/CTKD scripts/run_cifar_distill.sh (-r 0.1 -a 0.9
--have_mlp 1 --mlp_name global --t_start 1 --t_end 20 --cosine_decay 1
--decay_max 0 --decay_min -1 --decay_loops 10): CE 0.1, 0.9 x the T^2 KL at
the learned global temperature 1 + 20 sigmoid(t), t from 1.0, its gradient
reversed by a factor going from 0 to -1 over the first 10 epochs; t trains
with the student's SGD and weight decay. metrics.jsonl records T
(`temperature`) each epoch. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  config = baseline.distilled('ctkd', arg)
  config.ce_weight, config.kd_weight = 0.1, 0.9
  return config
