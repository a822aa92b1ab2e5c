"""What every method term is: a Term, and the Context its loss reads."""
import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from kdjax import errors


class Examples(NamedTuple):
  """What a step knows of its examples beyond their pixels, for terms that
  keep something per training example (Term.reads_examples)."""
  indices: jax.Array  # each of this device's examples' index in the training set
  train_labels: jax.Array  # the whole training set's labels
  key: jax.Array  # this step's key for the term's sampling, the same on every device


class Context(NamedTuple):
  """What a term's loss sees of one student's step on this device."""
  student: Any  # the student's outputs: logits, feature, stage_features (+ heads, hint)
  teacher: Any  # the frozen teacher's outputs (gradient-free), or None
  peer_logits: Sequence[jax.Array]  # the other students' logits (online)
  targets: jax.Array  # [batch, classes] label distributions, mixed with mixup
  own_targets: jax.Array  # each example's own one-hot label, before mixing
  config: Any
  gather: Callable[[jax.Array], jax.Array]  # an array over the global batch
  global_batch: int
  # The 1-based epoch the step is in (a traced int), or None where the caller
  # passed no step: every ramp is then complete.
  epoch: Optional[jax.Array]
  axis_name: Optional[str]  # the device axis the step is mapped over, if any
  # part(*inputs) applies the term's learned module (Term.part) in training
  # mode with its parameters and state; None for a term without one.
  part: Optional[Callable[..., Any]] = None
  examples: Optional[Examples] = None  # loss_fn's `examples`
  # The outputs of a batch's second group of rows that the step forwards
  # without training on them (CS-KD's partners; Term.composition), or None.
  second: Any = None
  step: Optional[jax.Array] = None  # loss_fn's `step` (traced), or None
  # The final classifier's cross-entropy weight (ce_weight) for a term that
  # carries that cross-entropy itself (Term.carries_ce).
  ce_weight: float = 1.0
  teacher_variables: Any = None  # the frozen teacher's {'params', 'batch_stats'}


@dataclasses.dataclass(frozen=True)
class Term:
  """One distillation term: what it adds to each student's cross-entropy."""
  name: str  # as config.method names it
  loss: Callable[[Context], jax.Array]
  teacher: bool = False  # learns from a frozen teacher
  # What the student model carries for it: '' (nothing), 'heads' (intermediate
  # classifiers), 'hint' (a FitNets regressor) or 'peers' (a cohort).
  student_part: str = ''
  # Pairs each student stage with a teacher stage (feature.paired_stages),
  # which build checks before the run starts.
  pairs_stages: bool = False
  # part(config, ctx) -> the flax module the term trains beside the student
  # (regressors, connectors...), built for the shapes in a Context; its
  # parameters and state are the train state's params['method'][name] and
  # batch_stats['method'][name], trained with the student's optimizer and
  # never part of what the workdir teaches or is evaluated with.
  part: Optional[Callable[[Any, Context], Any]] = None
  # Outputs the term reads from the teacher beyond logits, features and stages
  # (a teacher without them is refused before the run).
  teacher_outputs: Sequence[str] = ()
  # Reads the step's Examples (loss_fn's `examples`): their training-set
  # indices, the training labels and a key.
  reads_examples: bool = False
  # What its batches are made of beyond the epoch's examples (an
  # order.COMPOSITIONS name): 'pairs' (each example's class partner, forwarded
  # as a batch of its own without gradient, in Context.second), 'carry' (the
  # previous step's examples again) or 'views' (the same examples again, as
  # MLKD's strong view); the second group of 'carry' and 'views' is forwarded
  # as a batch of its own and trained on: the student's outputs hold both
  # groups, first rows first.
  composition: str = ''
  mixup: bool = True  # its reference trains with mixup, or could
  # The only terms it combines with (None: any).
  combines_with: Optional[frozenset] = None
  # Its loss holds the final classifier's cross-entropy, at Context.ce_weight;
  # the method adds no cross-entropy of its own.
  carries_ce: bool = False
  # records(config, part_params) -> {name: value} that each epoch's record
  # (metrics.jsonl) gets from the term's learned parameters (CTKD's temperature).
  records: Optional[Callable[[Any, Any], Dict[str, float]]] = None


def check_choice(config, field, choices):
  if config[field] not in choices:
    raise errors.ConfigError(field, config[field], f'set it to one of {list(choices)}.')


def ramp(epoch, warmup_epochs):
  """min(epoch / warmup_epochs, 1), mdistiller's warm-up of a term's weight
  (epochs counted from 1); 1 where `epoch` is None."""
  if epoch is None or not warmup_epochs:
    return 1.0
  return jnp.minimum(epoch / warmup_epochs, 1.0)
