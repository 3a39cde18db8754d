"""The import layering inside `jaxreid/` (docs/design.md, "Layout and the
one-way dependency"), read from the source with `ast` (nothing is imported):
its subpackages and top-level modules import each other without a cycle, and
evaluation never imports training."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'jaxreid'


def _module_names() -> dict:
  """{'jaxreid.training.loop': path, 'jaxreid.training': .../__init__.py, ...}."""
  names = {}
  for path in PACKAGE.rglob('*.py'):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    names['.'.join(parts)] = path
  return names


def _imports(name: str, path: pathlib.Path, modules) -> set:
  """The jaxreid modules `name` imports anywhere in its file (function-level
  imports included); ``from a import b`` counts as `a.b` when that is a module."""
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: from the package, up level - 1
        anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(anchor + ([base] if base else []))
      for alias in node.names:
        found.add(f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base)
  return {m for m in found if m == 'jaxreid' or m.startswith('jaxreid.')}


def _unit(module: str) -> str:
  """The layer a module belongs to: its subpackage or top-level module of jaxreid."""
  return '.'.join(module.split('.')[:2])


def _find_cycle(graph: dict):
  """A cycle of `graph` ({node: set of nodes}) as a list [a, b, ..., a], or None."""
  state = {}  # node -> 'open' while on the DFS stack, 'done' after
  stack = []

  def visit(node):
    state[node] = 'open'
    stack.append(node)
    for succ in sorted(graph.get(node, ())):
      if state.get(succ) == 'open':
        return stack[stack.index(succ):] + [succ]
      if succ not in state:
        cycle = visit(succ)
        if cycle:
          return cycle
    stack.pop()
    state[node] = 'done'
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def _graph():
  modules = _module_names()
  return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_chain():
  assert _find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert _find_cycle({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) is None


def test_the_import_reader_sees_the_imports_of_this_tree():
  graph = _graph()
  # As written in the source today (hand-checked), relative and function-level
  # forms included.
  assert 'jaxreid.sharding' in graph['jaxreid.evaluation.retrieval']
  assert 'jaxreid.evaluation.retrieval' in graph['jaxreid.training.evaluate']


def test_subpackages_import_each_other_without_a_cycle():
  units = {}
  for module, imported in _graph().items():
    if module != 'jaxreid':
      units.setdefault(_unit(module), set()).update(
          _unit(m) for m in imported if m != 'jaxreid' and _unit(m) != _unit(module))
  cycle = _find_cycle(units)
  assert cycle is None, 'import cycle between parts of jaxreid: ' + ' -> '.join(cycle)


def test_evaluation_does_not_import_training():
  offenders = {module: sorted(m for m in imported if m.startswith('jaxreid.training'))
               for module, imported in _graph().items()
               if module.startswith('jaxreid.evaluation')}
  assert not {k: v for k, v in offenders.items() if v}, offenders
