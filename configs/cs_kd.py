"""CS-KD (Yun et al., CVPR 2020, class-wise self-knowledge distillation), no teacher.

python main.py --config=configs/cs_kd.py
Each step's 128 examples come with 128 partners, each a random training
example of its class, forwarded as a batch of their own without gradient;
CE + 1 x 4^2 KL(softmax(partner / 4) || softmax(example / 4)), batch mean.
The reference's CIFAR-100 recipe (alinlab/cs-kd README's command and
train.py): SGD momentum 0.9, weight decay 1e-4, 200 epochs at 0.1, times 0.1
from epoch 101 and again from 151 (train.py lowers the rate after the epoch
that reaches 0.5 and 0.75 of the run); crop and flip, no rotation; no mixup.
Heads as the study's self row: --config.method=cskd_self. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  del arg
  config = baseline.get_config()
  config.method = 'cskd'  # cs_kd_weight, cs_kd_temperature: configs/default.py's
  config.update(schedule='step', learning_rate=0.1, warmup_epochs=0.0, num_epochs=200,
                decay_epochs=(101, 151), decay_rate=0.1, weight_decay=1e-4,
                rotation_degrees=0.0)
  return config
