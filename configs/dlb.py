"""DLB (Shen et al., CVPR 2022, self-distillation from the last mini-batch), no teacher.

python main.py --config=configs/dlb.py
Each step forwards its 128 new examples, then the previous step's 128 again
under a new augmentation, each as a batch of its own; CE over all 256 + 1 x
3^2 KL(softmax(the previous step's logits / 3) || softmax(carried / 3)),
batch mean (dlb.py; tau 3 and alpha 1 from the paper, as the script sets no
defaults). dlb.py's optimizer: SGD with Nesterov momentum 0.9, weight decay
5e-4, a multi-step decay of 0.1; its batch size, epochs, rate and milestones
are arguments without defaults, and the paper's values were not available to
this project, so the study's batch, epochs and schedule stand in for them.
No mixup. Heads as the study's self row: --config.method=dlb_self. Not a row
of the study.
"""
from configs import baseline


def get_config(arg=None):
  del arg
  config = baseline.get_config()
  config.method = 'dlb'  # dlb_weight, dlb_temperature: configs/default.py's
  config.nesterov = True
  return config
