"""Every config field, with its default. Experiment configs start from this one."""
import ml_collections


def get_config(arg=None):
  del arg
  config = ml_collections.ConfigDict()
  # Defaults are the study's recipe (github nhandsome-new/resnet_kd); each names
  # the file of the study's code it comes from. docs/configs.md's "The study's
  # recipe" table lists them beside kdjax's and every remaining difference.

  # Data.
  # 'cifar100' (tensorflow-datasets), 'fashion_mnist' (its IDX files or TFDS),
  # 'digits' (scikit-learn, offline), 'synthetic' (random images of
  # CIFAR-100's shapes, for timing) or 'imagenet2012' (TFDS, from the ILSVRC
  # tars in manual_dir); docs/data.md
  config.dataset = 'cifar100'
  config.data_dir = ''  # TFDS data_dir; '' = TFDS's default (~/tensorflow_datasets)
  # A folder holding a pre-downloaded cifar-100-binary.tar.gz, Fashion-MNIST's
  # four IDX .gz files, or ImageNet's ILSVRC2012_img_train.tar and
  # ILSVRC2012_img_val.tar.
  config.manual_dir = ''
  # ImageNet's crop: training RandomResizedCrop(image_size), evaluation the
  # center image_size crop of the image resized to image_size x 256/224.
  config.image_size = 224
  # How batches reach the devices: 'device' (both splits kept on every
  # device, batches gathered there by index), 'stream' (host workers read and
  # transform each batch ahead of its step), 'auto' (the stream for ImageNet,
  # device otherwise). Both give the same rows in the same order.
  config.input_pipeline = 'auto'
  # The stream's worker processes per host; 0 = one per CPU core for
  # encoded images, threads of the training process for arrays.
  config.input_workers = 0
  config.input_prefetch = 2  # steps each worker holds ready, at most
  # Train on the first N examples of the training split only (0 = all of
  # them), for quick checks on a subset; the test split stays whole.
  config.train_examples = 0
  # Training transform: zero-pad 4 + random 32x32 crop + horizontal flip on
  # the array datasets, on the device (src/data.py: RandomCrop(32, 4),
  # RandomHorizontalFlip); ImageNet's RandomResizedCrop + flip, on the host.
  config.augment = True
  # Then a rotation by an angle uniform in [-d, d] degrees, nearest, zero fill
  # (src/data.py: RandomRotation(15) on PIL images); 0 = off.
  config.rotation_degrees = 15.0

  # Model.
  config.model = 'resnet18'  # a name in kdjax.models (src/cifar_resnet.py: resnet18)
  # ResNet: channels of the first stage, later ones double it; RepVGG: base width (A0: 64).
  config.width = 64
  config.stage_sizes = ()  # blocks per stage; () = the architecture's own (2, 2, 2, 2) for resnet18
  # The ResNets' stem: 'cifar' (a 3x3 stride-1 conv, the study's), 'imagenet'
  # (torchvision's 7x7 stride-2 conv and 3x3 stride-2 max-pool) or 'auto' =
  # imagenet on imagenet2012, cifar elsewhere.
  config.stem = 'auto'
  # Compute dtype: 'float32', 'bfloat16', or 'auto' = bfloat16 on GPUs and TPUs,
  # float32 on CPUs. Parameters, BatchNorm statistics and losses stay float32.
  config.dtype = 'auto'

  # Method.
  # 'baseline', or terms of kdjax.methods.TERMS joined by '_' in that order:
  # 'offline', 'dkd', 'dist', 'feature', 'at', 'nst', 'relation', 'sp', 'pkt',
  # 'online', 'self'; e.g. 'offline_self', 'dkd_self', 'online_self'.
  config.method = 'baseline'
  # The final classifier's cross-entropy weight; None = the method's own split:
  # 1 - kd_weight with offline, 1 - self_kd_weight with self, else 1.
  config.ce_weight = ml_collections.config_dict.placeholder(float)
  # offline, feature, relation: a teacher directory (a kdjax workdir or converted weights)
  config.teacher = ''
  # The teacher's BatchNorm: 'batch' normalizes each layer (each of RepVGG's
  # three branches' own) with the statistics of the global batch the teacher
  # sees, leaving its stored statistics as they are; 'running' uses the stored
  # ones (eval mode, RepVGG fused). The study's teacher ran in train mode:
  # src/module.py calls teacher_model.eval() once, in __init__, and PyTorch
  # Lightning 1.7 calls model.train() on the whole LightningModule when training
  # starts and after every validation loop, and nothing sets the teacher back.
  config.teacher_bn = 'batch'
  # The teacher's compute dtype ('float32', 'bfloat16' or 'auto' as for dtype),
  # apart from the student's; it has no backward pass, so float32 is cheap.
  # The study's teacher computed in float32 (Lightning's precision 32).
  config.teacher_dtype = 'float32'
  # The teacher's input: 'student' (the student's normalized pixels, as
  # src/module.py feeds the teacher the student's batch) or 'own' (the pixels
  # normalized with the teacher's mean and std from its model.json).
  config.teacher_input = 'student'
  # Mixup with one lam ~ Beta(alpha, alpha) per batch; 0 = off. The study mixes
  # every distillation row with alpha 0.4 (configs/modules/*_kd.yaml:
  # criterion_conf.mixup_alpha) and not the baseline (resnet18.yaml).
  config.mixup_alpha = 0.0
  # Each example's mixup partner: 'permutation' (a random permutation of the
  # global batch drawn from (seed, step), as src/utils/support_utils.py
  # mixup_data's torch.randperm) or 'mirror' (the global batch reversed).
  config.mixup_partner = 'permutation'
  # offline: (1 - w) * CE + w * T^2 KL(teacher || student)
  # (configs/modules/resnet18_with_kd.yaml: teacher_lambda 0.6, temperature 10;
  # src/module.py KDResNetModule).
  config.kd_weight = 0.6
  config.kd_temperature = 10.0
  # The KL's reduction, a kdjax.methods.KD_REDUCTIONS: 'mean' over batch and
  # classes, torch's nn.KLDivLoss() default that src/module.py uses, or
  # 'batchmean' (a soft cross-entropy's, as offline + self uses).
  config.kd_reduction = 'mean'
  # offline and dkd: z-score the student's and the teacher's logits per example
  # (unbiased std, eps 1e-7) before the temperature (Sun et al., CVPR 2024;
  # sunshangquan/logit-standardization-KD mdistiller/distillers/KD.py).
  config.logit_standardization = False
  # dkd: w(epoch) * T^2 [alpha KL(target vs rest) + beta KL(non-target classes)],
  # w ramping as min(epoch / warmup, 1) from epoch 1 (mdistiller/engine/cfg.py
  # DKD: CE 1, alpha 1, beta 8, T 4, warm-up 20). Not a row of the study.
  config.dkd_alpha = 1.0
  config.dkd_beta = 8.0
  config.dkd_temperature = 4.0
  config.dkd_warmup_epochs = 20
  # dist: w T^2 [beta (1 - inter-class Pearson) + gamma (1 - intra-class
  # Pearson over the global batch)] of the softened predictions (hunto/
  # image_classification_sota configs/strategies/distill/dist_cifar.yaml:
  # kd_loss_weight 2, kd dist_t4; lib/models/losses/dist_kd.py). Not a row of the study.
  config.dist_weight = 2.0
  config.dist_beta = 1.0
  config.dist_gamma = 1.0
  config.dist_temperature = 4.0
  # self: each head gets (1 - a) * CE + a * T^2 KL from the final logits +
  # b * squared L2 to the final feature, and the final classifier's CE gets
  # (1 - a) (configs/modules/resnet18_self_kd.yaml: self_alpha 0.1,
  # temperature 3, self_beta 1e-6; src/module.py SelfKDResNetModule, the
  # Be Your Own Teacher reference code's terms).
  config.self_kd_weight = 0.1  # a
  config.self_kd_temperature = 3.0  # T
  config.self_feature_weight = 1e-6  # b
  # b multiplies a sum over the global batch and the features ('sum', the
  # study's src/utils/support_utils.py feature_loss_function) or a batch mean
  # of the per-example sums ('mean').
  config.self_feature_reduction = 'sum'
  # The heads' CE target: 'own' (each example's label before mixing, as the
  # study's code does) or 'mixed' (the final classifier's mixed target).
  config.head_labels = 'own'
  # feature: CE + beta * MSE(regressor(student stage), teacher stage), FitNets as
  # RepDistiller runs it (hint_layer 2 = the output of stage index 1, beta = 100).
  # The teacher stage is the deepest one with the same grid. Not a row of the study.
  config.hint_stage = 1  # the student stage (0 = first) whose output is regressed
  config.hint_weight = 100.0
  # at: w * sum over stage pairs of AT's attention-map distance, p-th powers
  # (mdistiller/engine/cfg.py AT: weight 1000, p 2); nst: w * sum of NST's
  # polynomial-kernel MMD (NST: 50). Each student stage pairs with the deepest
  # teacher stage of its grid. Not rows of the study.
  config.at_weight = 1000.0
  config.at_p = 2.0
  config.nst_weight = 50.0
  # vid: w * sum over stage pairs of VID's Gaussian negative log-likelihood of
  # the teacher stage under a regressor of the student's and learned
  # per-channel variances (mdistiller/engine/cfg.py VID: weight 1, eps 1e-5,
  # initial variance 5); the regressors train with the student.
  config.vid_weight = 1.0
  config.vid_init_variance = 5.0
  config.vid_eps = 1e-5
  # reviewkd: w(epoch) * ReviewKD's hierarchical context loss between the
  # student's fused features and the teacher's stages (before their last
  # ReLU) and pooled feature, w ramping as min(epoch / warmup, 1) from epoch 1
  # (mdistiller's configs/cifar100/reviewkd.yaml: weight 5; engine/cfg.py:
  # warm-up 20 epochs); the fusion blocks train with the student.
  # ofd: w * sum over stage pairs of OFD's partial L2 between the student's
  # connected pre-ReLU stage and the teacher's, the deepest pair weighing 1 and
  # each shallower one half the next (mdistiller/engine/cfg.py OFD: weight
  # 0.001, 1x1 connectors); the margins come from the teacher's BN parameters,
  # the connectors train with the student.
  config.ofd_weight = 0.001
  config.reviewkd_weight = 5.0
  config.reviewkd_warmup_epochs = 20
  # ReviewKD reads the student's stages after their last ReLU (mdistiller's
  # STU_PREACT False, its CIFAR configs) or before it (True, its ImageNet ones).
  config.reviewkd_student_preact = False
  # sp: w * SP's Gram-matrix distance on the deepest stages (SP: 3000); pkt:
  # w * PKT's KL on the pooled features (PKT: 30000); both over the global
  # batch. Not rows of the study.
  config.sp_weight = 3000.0
  config.pkt_weight = 30000.0
  # crd: w * CRD's NCE losses of the student's and the teacher's embeddings
  # (dim 128) of the pooled features against a memory of every training
  # example's, updated with momentum 0.5, with 16384 negatives of other classes
  # per example and temperature 0.07 (mdistiller/engine/cfg.py CRD: weight
  # 0.8, mode exact); the embeddings train with the student, the memory is
  # part of the train state.
  config.crd_weight = 0.8
  config.crd_dim = 128
  config.crd_negatives = 16384
  config.crd_temperature = 0.07
  config.crd_momentum = 0.5
  # relation: CE + w_d * RKD distance + w_a * RKD angle on the pooled features of
  # the global batch; RepDistiller's RKDLoss weights. Not a row of the study.
  config.rkd_distance_weight = 25.0
  config.rkd_angle_weight = 50.0
  # online: every student (config.model and each of config.peers) adds
  # w * mean over the others of T^2 KL(other || itself); Deep Mutual Learning's
  # w = 1, T = 1. Students share width and stage_sizes, each is checkpointed and
  # evaluated, and config.model's accuracy is the run's headline. Not a row of
  # the study.
  config.peers = ()  # model names, e.g. ('repvgg_a0',)
  config.online_weight = 1.0
  config.online_temperature = 1.0

  # The methods of 2023-2026 papers' tables (each its authors' code; configs/
  # <name>.py set their CIFAR-100 weights, configs/imagenet.py their ImageNet ones).
  # ttm, wttm: w x KL from the teacher's softmax raised to `exponent` and
  # renormalised to the student's softmax, wttm's weighted per example by the
  # power sum (zkxufo/TTM README: ttm l 0.1, -b 45; wttm l 0.2, -a 4).
  config.ttm_exponent = 0.1
  config.ttm_weight = 45.0
  # nkd: -p_t[y] log p_s[y] + gamma T^2 CE of the non-target classes' softmaxes
  # at T (yzd-v/cls_KD configs/distillers/cifar100/res34_distill_res18_cifar.py:
  # temp 3, gamma 3.5). No mixup.
  config.nkd_temperature = 3.0
  config.nkd_gamma = 3.5
  # ctkd: kd_weight x T^2 KL at a learned T = t_start + t_end sigmoid(param),
  # param's gradient times lam(epoch), a half cosine from 0 to -1 over
  # lambda_epochs (zhengli97/CTKD scripts/run_cifar_distill.sh: t_start 1,
  # t_end 20, decay_loops 10). metrics.jsonl records T as `temperature`.
  config.ctkd_t_start = 1.0
  config.ctkd_t_end = 20.0
  config.ctkd_lambda_epochs = 10
  # mlkd: each batch also carries its examples' strong view (RandAugment and
  # Cutout); ce_weight x both views' CE + kd_weight x MLKD's levels at
  # kd_temperature, 3, 5, 2, 6. No mixup.
  # sdd, sdddkd: KD (kd_weight, kd_temperature) or DKD (the dkd_* fields) on the
  # logits of the last map's regions at these scales (SDD-CVPR2024's M). No mixup.
  config.sdd_scales = (1, 2)
  # srd: a connector (1x1 conv, BN, ReLU) on the student's last map; w_f x MSE
  # of the pooled features + w_l x MSE of the teacher's classifier on them
  # against its logits (jingyang2017/KD_SRRL: both 1).
  config.srd_feature_weight = 1.0
  config.srd_logit_weight = 1.0
  # kdsvd: w x KDSVD on the paired stages, k teacher singular vectors
  # (mdistiller/engine/cfg.py KDSVD: k 1, weight 1).
  config.kdsvd_weight = 1.0
  config.kdsvd_k = 1

  # Self-distillation without heads (kdjax.methods.self_distillation); each
  # combines with the heads (self) only, and those marked refuse mixup.
  # pskd: the final classifier's cross-entropy to (1 - a_t) y + a_t p, p each
  # example's softmax from the last step that trained on it (labels in the
  # first epoch), a_t = a_T x epoch / num_epochs (lgcnsai/PS-KD-Pytorch
  # main.py: --alpha_T 0.8). No mixup.
  config.ps_kd_alpha = 0.8
  # cskd: each batch example's partner is a random example of its class,
  # forwarded as a second batch without gradient; CE + w T^2 KL(partner ||
  # example), batch mean (alinlab/cs-kd train.py: --lamda 1, --temp 4). No mixup.
  config.cs_kd_weight = 1.0
  config.cs_kd_temperature = 4.0
  # tfkdreg: (1 - a) CE + a x multiplier x KLDivLoss(mean)(softmax(virtual / T)
  # || softmax(z)), the virtual teacher holding correct_prob on the label
  # (Teacher-free-Knowledge-Distillation experiments/base_experiments/
  # base_resnet18/params.json: reg_alpha 0.1, reg_temperature 20, multiplier
  # 100; my_loss_function.py: correct_prob 0.99). No mixup.
  config.tf_reg_alpha = 0.1
  config.tf_reg_temperature = 20.0
  config.tf_reg_multiplier = 100.0
  config.tf_reg_correct_prob = 0.99
  # dlb: each batch also carries the previous step's examples, augmented
  # anew; CE over both + w T^2 KL(the previous step's logits || the carried
  # half's), batch mean (Meta-knowledge-Lab/DLB dlb.py, which has no defaults;
  # the paper's tau 3 and alpha 1). No mixup.
  config.dlb_weight = 1.0
  config.dlb_temperature = 3.0
  # uskd: CE + a L_target + b L_non-target (Zipf labels) + mu x a weak head's
  # label-smoothed CE, the weak head a linear layer on the second-to-last
  # stage's pooled output (yzd-v/cls_KD configs/distillers/cifar100/
  # res18_sd_cifar.py: alpha 0.1, beta 0.1, mu 0.1).
  config.uskd_alpha = 0.1
  config.uskd_beta = 0.1
  config.uskd_mu = 0.1

  # Optimization: SGD with momentum 0.9 and weight decay 5e-4 on every
  # parameter (configs/modules/resnet18*.yaml: optimizer_conf).
  config.batch_size = 128  # global, split evenly over all devices (configs/datamodules/cifar100.yaml)
  config.eval_batch_size = 500  # global; the test split is padded and masked, never cut
  config.num_epochs = 200  # configs/trainer/default.yaml: max_epochs
  # A kdjax.optim.SCHEDULES name. 'restarts' is the study's
  # CosineAnnealingWarmUpRestarts(T_0=30, T_mult=1, eta_max=0.1, T_up=1,
  # gamma=0.5) over SGD(lr=1e-3), stepped once per epoch (src/module.py,
  # src/utils/cosine_annealing_warmup.py); 'warmup_cosine' is one linear
  # warm-up then one cosine, stepped per iteration; 'step' decays by
  # decay_rate after each of decay_epochs (mdistiller's recipe).
  config.schedule = 'restarts'
  config.learning_rate = 0.1  # the peak (restarts: of the first cycle; eta_max)
  config.min_learning_rate = 1e-3  # where warm-ups start and cosines end (the SGD lr)
  config.warmup_epochs = 1.0  # linear warm-up (restarts: whole epochs at each cycle's start; T_up)
  config.restart_epochs = 30.0  # restarts: epochs per cycle (T_0)
  config.restart_decay = 0.5  # restarts: each cycle's peak is this times the last one's (gamma)
  # restarts: how often an epoch the rate changes (the study: 1, Lightning's
  # scheduler step after each epoch); restart_epochs and warmup_epochs are
  # whole numbers of these updates. A run k times shorter than the study's
  # with k updates an epoch follows its schedule with every length divided by k.
  config.lr_updates_per_epoch = 1
  # step: learning_rate times decay_rate after each of these epochs (mdistiller:
  # 150, 180, 210), after a linear warm-up over warmup_epochs if set (Tf-KD's
  # WarmUpLR: learning_rate x (i + 1) / warm-up steps at step i)
  config.decay_epochs = ()
  config.decay_rate = 0.1
  config.momentum = 0.9
  # 'sgd', or 'dot' (Zhao et al., ICCV 2023, distillation-oriented trainer;
  # mdistiller/engine/dot.py): the cross-entropy's gradient and the terms' get
  # momentum buffers of their own, momentum - dot_delta and momentum +
  # dot_delta (mdistiller/engine/cfg.py: delta 0.075).
  config.optimizer = 'sgd'
  config.dot_delta = 0.075
  # Nesterov momentum, as torch.optim.SGD(nesterov=True) (PS-KD's and DLB's
  # references); the study: off.
  config.nesterov = False
  config.weight_decay = 5e-4  # as torch.optim.SGD(weight_decay=...): on every parameter
  config.seed = 0  # initialization, data order and augmentation
  # Train steps per dispatch: the mapped call runs this many steps in a
  # lax.scan (the largest divisor of the epoch's steps not above it), so the
  # host dispatches and fetches once per call. 0 = auto: 13 on GPUs and TPUs,
  # 1 on CPUs (XLA:CPU runs a scanned step's gradient about 4x slower).
  config.steps_per_call = 0

  # Output.
  config.log_every_steps = 100  # a progress line every N steps within an epoch; 0 = off
  config.keep_checkpoints = 2  # the last N checkpoints are kept, plus the best epoch's
  # Also checkpoint every N steps within an epoch (0 = at epoch ends only), so a
  # preempted run loses at most N steps; SIGTERM always saves the current step.
  config.checkpoint_every_steps = 0
  # Record a profile (jax.profiler, through clu) of about this many steps after
  # the first call, into the workdir for TensorBoard's profiler; 0 = off.
  config.profile_steps = 0

  return config
