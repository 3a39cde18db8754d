r"""Prints every field of a config with its value and its comment.

  python -m experiments.show_config --config=experiments/configs/synthetic_baseline.py
  python -m experiments.show_config --config=experiments/configs/m3d_synthetic.py:m3d \
      --config.learning_rate=0.01          # overrides are shown as they resolve

One line per leaf field, `key = value  # comment`, in alphabetical order. The
comment is the one written beside (or just above) the line that sets the field,
looked up first in the config file itself, then in the configs it imports
(down to base.py, which declares and comments every field).
"""

import ast
import importlib.util
import os
import sys

from absl import app
from ml_collections import config_flags

from experiments import common

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Path to a config file (experiments/configs/*.py, optionally FILE:variant); '
    'override fields with --config.key=value.')


def _flatten(node, prefix=''):
  """[(dotted key, value)] of the leaves of a (nested) dict, in order."""
  out = []
  for key, value in node.items():
    if isinstance(value, dict) and value:
      out.extend(_flatten(value, f'{prefix}{key}.'))
    else:
      out.append((f'{prefix}{key}', value))
  return out


def _config_sources(path: str) -> list:
  """The config file, then the experiments/configs modules it imports."""
  sources, todo = [], [os.path.abspath(path)]
  while todo:
    file = todo.pop(0)
    if file in sources or not os.path.isfile(file):
      continue
    sources.append(file)
    with open(file) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module == 'experiments.configs':
        todo.extend(importlib.util.find_spec(f'experiments.configs.{a.name}').origin
                    for a in node.names)
  return sources


def _attribute_path(node) -> str:
  """'eval.sampler' for the target `c.eval.sampler`; '' for anything else."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.insert(0, node.attr)
    node = node.value
  return '.'.join(parts) if isinstance(node, ast.Name) and node.id == 'c' else ''


def _dict_items(value):
  """(key, value node) pairs of `ConfigDict(dict(k=v))`, `dict(k=v)`, `{'k': v}`."""
  if isinstance(value, ast.Call) and value.args and not value.keywords:
    return _dict_items(value.args[0])  # ConfigDict(<dict>)
  if isinstance(value, ast.Call):
    return [(k.arg, k.value) for k in value.keywords if k.arg]
  if isinstance(value, ast.Dict):
    return [(k.value, v) for k, v in zip(value.keys, value.values)
            if isinstance(k, ast.Constant) and isinstance(k.value, str)]
  return []


def _comments(files: list) -> dict:
  """dotted key -> comment: the one at the end of the line that sets the key
  (`c.eval.metric = ...  # ...` or `metric='euclidean',  # ...` inside a
  ConfigDict), else the comment lines just above the statement; the first file
  that comments a key wins."""
  found = {}
  for file in files:
    with open(file) as f:
      lines = f.read().splitlines()
    trailing = lambda n: lines[n - 1].partition('  # ')[2].strip()

    def above(n):
      block = []
      for prev in reversed(lines[:n - 1]):
        if not prev.strip().startswith('#'):
          break
        block.insert(0, prev.strip().lstrip('#').strip())
      text = ' '.join(block)
      return text if len(text.split()) > 2 else ''  # not a section title like '# Bookkeeping.'

    def visit(path, value, line, statement_line):
      items = _dict_items(value)
      if items:
        for key, sub in items:
          visit(f'{path}.{key}', sub, sub.end_lineno, None)
      comment = trailing(line) or (above(statement_line) if statement_line else '')
      if comment and path not in found:
        found[path] = comment

    for node in ast.walk(ast.parse('\n'.join(lines))):
      if not isinstance(node, ast.Assign):
        continue
      for target in node.targets:
        elements = target.elts if isinstance(target, ast.Tuple) else [target]
        values = (node.value.elts if isinstance(node.value, ast.Tuple)
                  and len(node.value.elts) == len(elements) else [node.value] * len(elements))
        for element, value in zip(elements, values):
          path = _attribute_path(element)
          if path:
            visit(path, value, node.end_lineno, node.lineno)
  return found


def show(config, config_path: str) -> str:
  """The text `show_config` prints for `config` (loaded from `config_path`)."""
  comments = _comments(_config_sources(config_path.split(':')[0]))
  rows = _flatten(config.to_dict())
  width = max(len(f'{k} = {v!r}') for k, v in rows)
  out = []
  for key, value in rows:
    text = f'{key} = {value!r}'
    comment = comments.get(key, '')
    out.append(f'{text:<{width}}  # {comment}' if comment else text)
  return '\n'.join(out)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  path = next((a.split('=', 1)[1] for a in sys.argv if a.startswith('--config=')), None)
  if path is None or _CONFIG.value is None:
    raise app.UsageError('--config=FILE is required.')
  print(show(_CONFIG.value, path))


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
