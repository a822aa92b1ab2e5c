"""Errors in what the user asked for: main.py prints them on one line and exits 2.

Anything else that goes wrong is a bug, and keeps its traceback.
"""


class UserError(Exception):
  """A request kdjax refuses, with what to do instead."""


class ConfigError(UserError, ValueError):
  """A config field set to a value outside its domain."""

  def __init__(self, field: str, value, fix: str):
    super().__init__(f'--config.{field}={value}: {fix}')
    self.field = field
