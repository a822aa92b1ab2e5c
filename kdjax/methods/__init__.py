"""Training methods, each the cross-entropy plus distillation terms.

A method is 'baseline' (cross-entropy only) or terms joined by '_' in the
order of TERMS, e.g. 'offline', 'self', 'offline_self', 'dkd_self',
'online_relation'. Each term lives in the module of its family (response,
feature, relation, online, heads) as a terms.Term; REGISTRY, built from
those modules, is the one list that configs, checks, the benchmark and the
table of docs/methods.md follow. `get_loss_fn` turns a method into
  loss_fn(params, batch_stats, pixels, targets, teacher_variables, labels, step=None,
          examples=None, split=False) -> (loss, (new_batch_stats, metrics))
where `pixels` are augmented (and, with mixup, mixed) images in [0, 1],
`targets` the matching [batch, classes] label distributions, `labels` each
example's own integer label before mixing and `step` the train step (for
weights that ramp with training; absent: every ramp complete) and `examples`
a terms.Examples (for terms that keep something per training example); with
`split` the loss is (the final classifier's cross-entropy, the terms' sum),
DOT's task and distillation losses (optim.two_gradients). Only
`params` is differentiated; the teacher's variables are an input, never
trained; a term's learned parts are params[PARTS][term] and its state
batch_stats[PARTS][term].
"""
from kdjax.methods import feature
from kdjax.methods import heads
from kdjax.methods import response
from kdjax.methods.loss import get_loss_fn
from kdjax.methods.loss import init_parts
from kdjax.methods.loss import PARTS
from kdjax.methods.loss import split_parts
from kdjax.methods.registry import AUTO_STEM
from kdjax.methods.registry import BASELINE
from kdjax.methods.registry import ce_weight
from kdjax.methods.registry import correct_top1
from kdjax.methods.registry import get_method
from kdjax.methods.registry import Method
from kdjax.methods.registry import REGISTRY
from kdjax.methods.registry import stem_kwargs
from kdjax.methods.registry import students
from kdjax.methods.registry import TERMS
from kdjax.methods.terms import check_choice
from kdjax.methods.terms import Context
from kdjax.methods.terms import Examples
from kdjax.methods.terms import Term

KD_REDUCTIONS = response.KD_REDUCTIONS
HEAD_LABELS = heads.HEAD_LABELS
FEATURE_REDUCTIONS = heads.FEATURE_REDUCTIONS
hint_source = feature.hint_source
paired_stages = feature.paired_stages
