"""The registry of every term, and what a method (a set of them) needs of a run.

A method is 'baseline' (cross-entropy only) or terms joined by '_' in the
order of TERMS. Each term lives in the module of its family as a terms.Term;
REGISTRY, built from those modules, is the one list that configs, checks, the
benchmark and the table of docs/methods.md follow.
"""
import dataclasses
from typing import Dict, FrozenSet, Sequence, Tuple

import jax
import jax.numpy as jnp

from kdjax import data
from kdjax import errors
from kdjax import models
from kdjax import order
from kdjax.methods import contrastive
from kdjax.methods import feature
from kdjax.methods import feature_parts
from kdjax.methods import heads
from kdjax.methods import online
from kdjax.methods import relation
from kdjax.methods import response
from kdjax.methods import self_distillation
from kdjax.methods.terms import Term

BASELINE = 'baseline'
AUTO_STEM = 'auto'  # config.stem: ImageNet's on imagenet2012, else CIFAR's
DEFAULT_STEM = 'cifar'  # the ResNets' own, which model.json leaves unsaid


def stem_kwargs(config, name: str) -> Dict[str, str]:
  """The `stem` constructor argument of model `name` in a run of `config`:
  config.stem, AUTO_STEM resolved by the dataset (ImageNet's on
  imagenet2012); none for CIFAR's, the default, or a model without stems."""
  if name not in models.STEM_MODELS:
    return {}
  stem = config.stem
  if stem == AUTO_STEM:
    stem = 'imagenet' if config.dataset == data.IMAGENET else DEFAULT_STEM
  return {} if stem == DEFAULT_STEM else {'stem': stem}


REGISTRY: Dict[str, Term] = {term.name: term for family in (
    response, feature, feature_parts, relation, contrastive, online, self_distillation, heads)
    for term in family.TERMS}
TERMS = tuple(REGISTRY)  # the order terms take in a method's name


@dataclasses.dataclass(frozen=True)
class Method:
  terms: FrozenSet[str]

  def _parts(self):
    return {REGISTRY[t].student_part for t in self.terms}

  @property
  def uses_teacher(self) -> bool:
    return any(REGISTRY[t].teacher for t in self.terms)

  @property
  def uses_heads(self) -> bool:  # the students carry intermediate heads
    return 'heads' in self._parts()

  @property
  def uses_hint(self) -> bool:  # the students carry a FitNets regressor
    return 'hint' in self._parts()

  @property
  def uses_peers(self) -> bool:  # several students learn together
    return 'peers' in self._parts()

  @property
  def pairs_stages(self) -> bool:  # a term pairs student and teacher stages
    return any(REGISTRY[t].pairs_stages for t in self.terms)

  @property
  def uses_parts(self) -> bool:  # a term trains a module of its own
    return any(REGISTRY[t].part for t in self.terms)

  @property
  def composition(self) -> str:
    """What a step's batch holds beyond the epoch's examples (order.COMPOSITIONS)."""
    return next((REGISTRY[t].composition for t in self.terms if REGISTRY[t].composition), '')

  @property
  def groups(self) -> int:  # rows a step's batch has per example of the epoch's order
    return order.groups(self.composition)

  @property
  def carries_ce(self) -> bool:  # a term holds the final classifier's cross-entropy
    return any(REGISTRY[t].carries_ce for t in self.terms)

  def check(self, config) -> None:
    """Refuses a teacher or peers that the method does not use, or their absence."""
    if self.uses_peers and not config.peers:
      raise errors.ConfigError('peers', '', f'method {config.method!r} trains students '
                               'together; set it to the models that learn alongside '
                               'config.model (e.g. configs/online_kd.py:repvgg_a0).')
    if config.peers and not self.uses_peers:
      raise errors.ConfigError('peers', ','.join(config.peers), f'method {config.method!r} '
                               'trains one student; clear it or add the online term to the '
                               'method.')
    if self.uses_parts and self.uses_peers:
      raise errors.ConfigError('method', config.method, 'the terms that train a module of '
                               'their own (' + ', '.join(sorted(
                                   t for t in self.terms if REGISTRY[t].part)) + ') train '
                               'one student; drop them or the online term.')
    if self.uses_teacher and not config.teacher:
      raise errors.ConfigError('teacher', '', f'method {config.method!r} learns from a '
                               'teacher; set it to a teacher directory (a kdjax workdir or a '
                               'converted PyTorch teacher).')
    if config.logit_standardization and not self.terms & {'offline', 'dkd'}:
      raise errors.ConfigError('logit_standardization', True, f'method {config.method!r} '
                               'has no offline or dkd term, whose logits it standardizes; '
                               'set it to False or add one of them.')
    if config.teacher and not self.uses_teacher:
      raise errors.ConfigError('teacher', config.teacher, f'method {config.method!r} uses no '
                               'teacher; clear it (--config.teacher=) or pick a method that '
                               'does.')
    for name in sorted(self.terms):
      term = REGISTRY[name]
      others = self.terms - {name}
      if term.combines_with is not None and not others <= term.combines_with:
        raise errors.ConfigError('method', config.method, f'{name} combines only with '
                                 f'{sorted(term.combines_with)}; drop '
                                 f'{sorted(others - term.combines_with)}.')
      if config.mixup_alpha and not term.mixup:
        raise errors.ConfigError('mixup_alpha', config.mixup_alpha, f'{name}\'s reference '
                                 'trains without mixup and its loss reads each example\'s own '
                                 'label or prediction; set it to 0.')

  def model_spec(self, config, hint_channels: Sequence[int] = ()) -> Tuple[str, dict]:
    """(name, constructor arguments) of the trained model, as model.json saves
    them: config.model, or with peers a cohort of it and them. Every student
    gets config.width and config.stage_sizes, heads with the self term, and
    with the feature term a FitNets regressor of its `hint_channels` width;
    ResNets get config.stem (stem_kwargs)."""
    names = (config.model, *config.peers)
    students_ = []
    for name, channels in zip(names, tuple(hint_channels) or (0,) * len(names)):
      kwargs = {'width': config.width}
      if self.uses_heads:
        kwargs['heads'] = True
      if config.stage_sizes:
        kwargs['stage_sizes'] = tuple(config.stage_sizes)
      kwargs.update(stem_kwargs(config, name))
      if channels:
        kwargs.update(hint_stage=config.hint_stage, hint_channels=channels)
      students_.append((name, kwargs))
    if len(students_) == 1:
      return students_[0]
    return models.COHORT, {'members': students_}

  def eval_sums(self, outputs, labels, mask):
    """Correct top-1 counts (over mask=1 examples) of what the method adds to the
    final classifier: each peer's, and each head's and their ensemble's."""
    sums = {}
    if self.uses_peers:
      for i, peer in enumerate(outputs['peers']):
        sums[f'peer{i + 1}_top1'] = correct_top1(peer['logits'], labels, mask)
    if self.uses_heads:
      head_logits = outputs['head_logits']
      for i, head in enumerate(head_logits):
        sums[f'head{i + 1}_top1'] = correct_top1(head, labels, mask)
      # Be Your Own Teacher's ensemble: the mean softmax of every classifier.
      ensemble = jnp.mean(jnp.stack([jax.nn.softmax(l)
                                     for l in (*head_logits, outputs['logits'])]), 0)
      sums['ensemble_top1'] = correct_top1(ensemble, labels, mask)
    return sums

  def records(self, config, parts, fetch) -> Dict[str, float]:
    """What each epoch's record gets from the terms' learned parameters
    (Term.records): `parts` is the train state's params[PARTS], and only the
    parts of terms that record are brought to the host, by `fetch`."""
    out = {}
    for name in sorted(self.terms):
      if REGISTRY[name].records:
        out.update(REGISTRY[name].records(config, fetch(parts[name])))
    return out

  def describe_test(self, test) -> str:
    """The method's part of the epoch line: heads and ensemble, peers (top-1 %)."""
    text = ''
    if self.uses_heads:
      head_keys = sorted(k for k in test if k.startswith('head'))
      text += (f'  heads {"/".join(f"{test[k]:.2f}" for k in head_keys)}%  ensemble '
               f'{test["ensemble_top1"]:.2f}%')
    if self.uses_peers:
      peers = sorted(k for k in test if k.startswith('peer'))
      text += f'  peers {"/".join(f"{test[k]:.2f}" for k in peers)}%'
    return text


def correct_top1(logits, labels, mask):
  """How many of the mask=1 examples `logits` classify right."""
  return jnp.sum(mask * (jnp.argmax(logits, -1) == labels))


def get_method(name: str) -> Method:
  if name == BASELINE:
    return Method(frozenset())
  terms = name.split('_')
  canonical = '_'.join(t for t in TERMS if t in terms)
  if not set(terms) <= set(TERMS) or len(set(terms)) != len(terms):
    raise ValueError(
        f'Unknown method {name!r}. A method is {BASELINE!r} or one or more of '
        f'{list(TERMS)} joined by "_" (e.g. offline_self); set --config.method to one.')
  if name != canonical:
    raise ValueError(f'Write method {name!r} as {canonical!r}: terms go in the order '
                     f'{list(TERMS)}, so each method has one name.')
  return Method(frozenset(terms))


def students(outputs):
  """Every student's outputs: the model's own, then its peers' (a cohort's)."""
  return (outputs, *outputs.get('peers', ()))


def ce_weight(terms, config) -> float:
  """The final classifier's cross-entropy weight: config.ce_weight if set, else
  Hinton's (1 - w) when the offline term softens its targets, Be Your Own
  Teacher's (1 - a) with heads (its reference code puts it there too), Tf-KD
  reg's (1 - a), else 1 (DKD's, DIST's, the feature and relation terms' and
  the other self-distillation terms' references)."""
  if config.ce_weight is not None:
    return config.ce_weight
  if 'offline' in terms:
    return 1 - config.kd_weight
  if 'self' in terms:
    return 1 - config.self_kd_weight
  if 'tfkdreg' in terms:
    return 1 - config.tf_reg_alpha
  return 1.0


