"""Tf-KD reg (Yuan et al., CVPR 2020, teacher-free KD with a virtual teacher).

python main.py --config=configs/tf_kd_reg.py
0.9 CE + 0.1 x 100 x KLDivLoss(mean)(softmax(virtual / 20) || softmax(z)), the
virtual teacher 0.99 on the label and 0.01 spread over the rest; as the code
computes it, the softmax of those probabilities over 20 is nearly uniform
(10.45 % on the label). The reference's CIFAR-100 recipe
(Teacher-free-Knowledge-Distillation experiments/base_experiments/
base_resnet18/params.json, main.py, train_kd.py, data_loader.py): SGD momentum
0.9, weight decay 5e-4, batch 128, 200 epochs: a linear warm-up over the first
epoch, then 0.1, times 0.2 from epochs 60, 120 and 160; crop, flip and a
15-degree rotation, as the study's; no mixup.
Heads as the study's self row: --config.method=tfkdreg_self. Not a row of the study.
"""
from configs import baseline


def tf_kd_recipe(config):
  """Tf-KD's training recipe (main.py, train_kd.py), shared by its two methods."""
  config.update(schedule='step', learning_rate=0.1, warmup_epochs=1.0, num_epochs=200,
                decay_epochs=(60, 120, 160), decay_rate=0.2, weight_decay=5e-4)
  return config


def get_config(arg=None):
  del arg
  config = baseline.get_config()
  config.method = 'tfkdreg'  # tf_reg_*: configs/default.py's
  return tf_kd_recipe(config)
