"""PS-KD (Kim et al., ICCV 2021, progressive self-knowledge distillation), no teacher.

python main.py --config=configs/ps_kd.py
The final classifier learns (1 - a_t) y + a_t p, p each example's softmax from
the last step that trained on it (labels alone in the first epoch), a_t = 0.8
x epoch / epochs. The reference's CIFAR-100 recipe (lgcnsai/PS-KD-Pytorch
main.py and its README's command): SGD with Nesterov momentum 0.9, weight
decay 5e-4, batch 128, 300 epochs at 0.1, times 0.1 from epochs 150 and 225;
crop and flip, no rotation (loader/custom_dataloader.py); no mixup.
Heads as the study's self row: --config.method=pskd_self. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  del arg
  config = baseline.get_config()
  config.method = 'pskd'  # ps_kd_alpha: configs/default.py's
  config.update(schedule='step', learning_rate=0.1, warmup_epochs=0.0, num_epochs=300,
                decay_epochs=(150, 225), decay_rate=0.1, nesterov=True, weight_decay=5e-4,
                rotation_degrees=0.0)
  return config
