"""The report's pictures: each row's curves (the mean over its seeds, a band
for their range), one colour per row, the legend beside the axes."""
from typing import List, Sequence

import numpy as np

from kdjax.report import runs as runs_lib

XS = ('epochs', 'images')  # what the curves are drawn against


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top  (only plotting needs it)
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  return pyplot


def _colours(plt, count: int):
  """A colour per row: tab20's ten strong colours first, then their light
  companions, so that up to ten rows never share a hue."""
  palette = plt.get_cmap('tab20')
  order = list(range(0, 20, 2)) + list(range(1, 20, 2))
  return [palette(order[i % 20]) for i in range(count)]


def _band(ax, x, per_seed: np.ndarray, colour, label=None):
  """The mean over seeds (rows of `per_seed`) and the band of their range."""
  line, = ax.plot(x, per_seed.mean(0), color=colour, label=label, linewidth=1.6)
  if len(per_seed) > 1:
    ax.fill_between(x, per_seed.min(0), per_seed.max(0), color=colour, alpha=0.2,
                    linewidth=0)
  return line


def _x(group: List[runs_lib.Run], x: str, images_per_epoch: float) -> np.ndarray:
  epochs = np.array([r['epoch'] for r in group[0].records], float)
  return epochs * images_per_epoch if x == 'images' else epochs


def _series(group: List[runs_lib.Run], key: str) -> np.ndarray:
  return np.array([[r[key] for r in run.records] for run in group], float)


def _zoom(ax, series: Sequence[np.ndarray], margin: float = 0.05):
  """The y-range of the mean curves after their first 30 % of epochs, where
  rows part: the early epochs start far below where the curves end and
  would flatten the rest (they may begin below the axis)."""
  means = [s.mean(0)[int(0.3 * s.shape[1]):] for s in series]
  low, high = min(m.min() for m in means), max(m.max() for m in means)
  pad = margin * max(high - low, 1e-6)
  ax.set_ylim(low - pad, high + pad)


def plot_curves(groups: List[List[runs_lib.Run]], labels: List[str],
                images_per_epoch: List[float], path: str, x: str = 'epochs') -> List[str]:
  """Test top-1 and train loss side by side, a line per row; returns the
  legend's labels, a row's each."""
  plt = _pyplot()
  fig, (top1, loss) = plt.subplots(1, 2, figsize=(12, 4.6))
  tops, losses = [], []
  for group, label, colour, per_epoch in zip(groups, labels, _colours(plt, len(groups)),
                                             images_per_epoch):
    xs = _x(group, x, per_epoch)
    tops.append(_series(group, 'test_top1'))
    losses.append(_series(group, 'train_loss'))
    _band(top1, xs, tops[-1], colour, label)
    _band(loss, xs, losses[-1], colour)
  xlabel = 'student images forwarded' if x == 'images' else 'epoch'
  top1.set(xlabel=xlabel, ylabel='test top-1 %', title='Test top-1')
  loss.set(xlabel=xlabel, ylabel='train loss', title='Train loss', yscale='log')
  _zoom(top1, tops)
  for ax in (top1, loss):
    ax.grid(alpha=0.3)
  legend = fig.legend(loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize='small',
                      frameon=False, title='row (mean, band: seed range)',
                      title_fontsize='small')
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)
  return [text.get_text() for text in legend.get_texts()]


HEAD_KEYS = ('test_top1', 'test_head1_top1', 'test_head2_top1', 'test_head3_top1',
             'test_ensemble_top1')


def plot_heads(groups: List[List[runs_lib.Run]], labels: List[str], path: str) -> bool:
  """Each self-distillation row's final classifier, heads and ensemble (test
  top-1), a panel per row; False if no row has heads."""
  panels = [(g, l) for g, l in zip(groups, labels) if 'test_head1_top1' in g[0].records[0]]
  if not panels:
    return False
  plt = _pyplot()
  columns = min(len(panels), 3)
  rows = -(-len(panels) // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False,
                           sharey=True)
  for ax in axes.flat[len(panels):]:
    ax.set_axis_off()
  colours = _colours(plt, len(HEAD_KEYS))
  for ax, (group, label) in zip(axes.flat, panels):
    xs = _x(group, 'epochs', 1.0)
    series = []
    for key, colour in zip(HEAD_KEYS, colours):
      if key in group[0].records[0]:
        series.append(_series(group, key))
        name = key[len('test_'):-len('_top1')] or 'final'  # test_top1: the final classifier
        _band(ax, xs, series[-1], colour, name if ax is axes.flat[0] else None)
    _zoom(ax, series)
    ax.set(xlabel='epoch', title=label)
    ax.grid(alpha=0.3)
  for ax in axes[:, 0]:
    ax.set_ylabel('test top-1 %')
  fig.legend(loc='center left', bbox_to_anchor=(1.0, 0.5), fontsize='small', frameon=False,
             title='classifier', title_fontsize='small')
  fig.tight_layout()
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)
  return True
