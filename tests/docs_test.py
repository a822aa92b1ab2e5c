"""README.md and docs/ stay true: their links resolve, and the configs, main.py
flags and config fields they name exist."""
import os
import re

import pytest

from configs import default
from kdjax import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md'] + sorted(os.path.join('docs', f) for f in os.listdir(
    os.path.join(ROOT, 'docs')) if f.endswith('.md'))
MAIN_FLAGS = {'config', 'workdir', 'fresh', 'distributed', 'coordinator_address',
              'num_processes', 'process_id'}
# What the docs name to show its refusal.
MISSPELLED = {'num_epoch'}


def _text(page):
  with open(os.path.join(ROOT, page)) as f:
    return f.read()


def _anchors(page):
  """GitHub's anchors of a page's headings."""
  headings = re.findall(r'^#+ (.+)$', _text(page), flags=re.M)
  return {re.sub(r'[^\w\- ]', '', h.strip().lower()).replace(' ', '-') for h in headings}


@pytest.mark.parametrize('page', PAGES)
def test_every_relative_link_resolves(page):
  links = re.findall(r'\]\(([^)\s]+)\)', _text(page))
  relative = [l for l in links if not re.match(r'[a-z]+://', l)]
  for link in relative:
    target, _, anchor = link.partition('#')
    path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target)) if target else (
        os.path.join(ROOT, page))
    assert os.path.exists(path), f'{page}: {link} points at nothing'
    if anchor:
      assert anchor in _anchors(os.path.relpath(path, ROOT)), f'{page}: no heading for {link}'


@pytest.mark.parametrize('page', PAGES)
def test_every_config_file_flag_and_field_named_exists(page):
  text = _text(page)
  for config in set(re.findall(r'\bconfigs/[a-z0-9_]+\.py', text)):
    assert os.path.exists(os.path.join(ROOT, config)), f'{page}: {config} does not exist'
  fields = set(default.get_config().keys())
  for field in set(re.findall(r'--config\.([a-z0-9_]+)', text)) - MISSPELLED:
    assert field in fields, f'{page}: --config.{field} is no config field'
  for line in text.splitlines():
    if re.search(r'\bmain\.py\s+--', line):
      for flag in re.findall(r'(?<![\w.-])--([a-z_]+)(?==|\b)', line):
        assert flag in MAIN_FLAGS, f'{page}: main.py has no flag --{flag}: {line}'


def test_the_readmes_fashion_mnist_table_is_the_report_of_the_committed_runs():
  results = os.path.join(ROOT, 'results', 'fashion_mnist')
  table = report.markdown(report.table_lines(report.find_runs(results)))
  assert table in _text('README.md')
  with open(os.path.join(results, report.REPORT_FILE)) as f:
    assert f.read().startswith(table + '\n\n')
