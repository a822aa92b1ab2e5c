"""Tf-KD self (Yuan et al., CVPR 2020): offline KD from a trained model of the
student's own architecture.

python main.py --config=configs/tf_kd_self.py:<teacher> --workdir=...
<teacher> is a teacher directory: a kdjax workdir of the same architecture
(e.g. a finished configs/baseline.py run) or a study teacher's name.
0.05 CE + 0.95 x 50 x 6^2 KLDivLoss(mean)(softmax(teacher / 6) ||
softmax(student / 6)) (my_loss_function.py loss_kd_self; experiments/
kd_experiments/resnet18_distill/resnet18_self_teacher/params.json: alpha 0.95,
temperature 6, multiplier 50), as kd_weight 47.5 and ce_weight 0.05, the
teacher on its running statistics (the reference's teacher is in eval mode);
Tf-KD's recipe (configs/tf_kd_reg.py). Not a row of the study.
"""
from configs import baseline
from configs import tf_kd_reg
from kdjax import study


def get_config(arg=None):
  if not arg:
    raise ValueError('Name the teacher after the config file: a kdjax workdir of the '
                     "student's architecture, e.g. configs/tf_kd_self.py:runs/cifar100/"
                     'baseline/seed0.')
  config = baseline.get_config()
  config.method = 'offline'
  config.teacher = study.TEACHERS[arg].directory if arg in study.TEACHERS else arg
  config.update(ce_weight=0.05, kd_weight=0.95 * 50, kd_temperature=6.0, kd_reduction='mean',
                teacher_bn='running')
  return tf_kd_reg.tf_kd_recipe(config)
