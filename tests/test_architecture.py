"""The house rules that keep the package extensible, checked on its source.

Imports go only downward through the layers of docs/extending.md, modules
import each other without circles, and an import inside a function is kept
for the optional heavy runtimes (each with a comment saying why). Read with
`ast`, so these checks run in a second and need no TensorFlow.
"""
import ast
import collections
import pathlib

import pytest

from tests import helpers

ROOT = helpers.REPO_ROOT
PACKAGE = ROOT / "fast_seg"

# Lower layers never import higher ones; packages of one layer never import
# each other. The order is docs/extending.md's.
LAYERS = {
    "fast_seg.protos": 0, "third_party": 0,
    "fast_seg.core": 1, "fast_seg.utils": 1,
    "fast_seg.feature_extractors": 2,
    "fast_seg.meta_architectures": 3,
    "fast_seg.data": 4,
    "fast_seg.builders": 5,
    "fast_seg.evaluation": 6, "fast_seg.model_optimization": 6,
    "fast_seg.training": 7, "fast_seg.export": 7,
    "fast_seg.compression": 8,
    "fast_seg.tools": 9,
    "fast_seg.commands": 10,
}

# Imported inside functions on purpose: large optional runtimes that only
# some commands need (the [export] extra, video, .mat files, plots).
OPTIONAL_RUNTIMES = ("coremltools", "tf2onnx", "onnx", "onnxruntime",
                     "ai_edge_litert", "cv2", "imageio", "scipy",
                     "matplotlib", "tensorflow")


def _module_name(path):
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _sources():
  paths = [p for p in PACKAGE.rglob("*.py") if not p.name.endswith("_pb2.py")]
  paths += list((ROOT / "third_party").glob("*.py"))
  return {_module_name(p): p for p in sorted(paths)}


SOURCES = _sources()


def _imported_modules(node):
  """Project modules named by one import statement."""
  if isinstance(node, ast.Import):
    names = [alias.name for alias in node.names]
  elif node.module:
    names = [f"{node.module}.{alias.name}" for alias in node.names]
    names = [n if n in SOURCES else node.module for n in names]
  else:
    names = []
  return {n for n in names if n.split(".")[0] in ("fast_seg", "third_party")}


def _imports(tree):
  """(module-level imports, [(function, import node)] inside functions)."""
  top, nested = set(), []
  for node in tree.body:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      top |= _imported_modules(node)
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      nested += [(node, sub) for sub in ast.walk(node)
                 if isinstance(sub, (ast.Import, ast.ImportFrom))]
  return top, nested


TREES = {name: ast.parse(path.read_text()) for name, path in SOURCES.items()}


def _layer_of(module):
  for prefix, layer in LAYERS.items():
    if module == prefix or module.startswith(prefix + "."):
      return prefix, layer
  return None, None


def test_every_package_has_a_layer():
  unplaced = {m for m in SOURCES if m != "fast_seg" and _layer_of(m)[0] is None
              and m.count(".") >= 1 and not m.startswith("third_party")}
  assert not unplaced, f"add these packages to LAYERS: {sorted(unplaced)}"


def test_imports_only_go_down():
  upward = []
  for module, tree in TREES.items():
    home, layer = _layer_of(module)
    if home is None:
      continue
    top, nested = _imports(tree)
    for target in top | {t for _, n in nested for t in _imported_modules(n)}:
      there, target_layer = _layer_of(target)
      if there is not None and there != home and target_layer >= layer:
        upward.append(f"{module} -> {target}")
  assert not upward, "imports that do not go down:\n" + "\n".join(upward)


def _cycles(graph):
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for nxt in graph[node]:
      if nxt not in index:
        visit(nxt)
        low[node] = min(low[node], low[nxt])
      elif nxt in on_stack:
        low[node] = min(low[node], index[nxt])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for node in list(graph):
    if node not in index:
      visit(node)
  return found


def test_no_import_circles():
  graph = collections.defaultdict(set)
  for module, tree in TREES.items():
    top, nested = _imports(tree)
    graph[module] |= top | {t for _, n in nested for t in _imported_modules(n)}
    graph[module] &= set(SOURCES)
  assert _cycles(graph) == []


def test_cycle_finder_can_fail():
  graph = collections.defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"},
                                        "d": {"a"}})
  assert _cycles(graph) == [["a", "b", "c"]]


def test_imports_inside_functions_are_optional_runtimes():
  misplaced = []
  for module, tree in TREES.items():
    for function, node in _imports(tree)[1]:
      roots = ({a.name.split(".")[0] for a in node.names}
               if isinstance(node, ast.Import) else {node.module.split(".")[0]})
      if not roots <= set(OPTIONAL_RUNTIMES):
        misplaced.append(f"{module}.{function.name}: {ast.unparse(node)}")
  assert not misplaced, "move these imports to the top:\n" + "\n".join(misplaced)


@pytest.mark.parametrize("module", ["fast_seg.utils.video_io",
                                    "fast_seg.export.onnx_format"])
def test_layer_check_sees_nested_imports(module):
  # The function-level walk must find something in modules known to have
  # optional-runtime imports, or the check above could never fail.
  assert any(True for _ in _imports(TREES[module])[1])


MAX_FUNCTION_LINES = 60


def _long_functions(tree, module):
  return [f"{module}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
          for node in ast.walk(tree)
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
          and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]


def test_functions_read_at_once():
  # Docstring included: a function whose explanation is that long is long.
  long = [f for module, tree in TREES.items() for f in _long_functions(tree, module)]
  assert not long, "split these functions:\n" + "\n".join(long)


def test_length_check_can_fail():
  body = "\n".join(f"  x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
  tree = ast.parse(f"def f():\n{body}\n")
  assert _long_functions(tree, "m") == [f"m.f: {MAX_FUNCTION_LINES + 1} lines"]
