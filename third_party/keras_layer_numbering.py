"""Keras' automatic layer names, as other projects' .h5 files carry them.

A Keras layer built without a name is called after its class, numbered by a
counter of the process that built it: 'conv2d', 'conv2d_1', 'conv2d_2', ...
(Keras 2.2 counted from 1: 'conv2d_1' first). So a file numbers its unnamed
layers from wherever that process stood, e.g. after building another model,
and only their order is fixed by the project's code. The Keras projects'
name maps give such layers their first-build names; `renumber` moves them
onto the file's own numbers, in order. Facts of Keras' naming only.
"""

import re


def _numbered(prefix):
  return re.compile(rf"^{re.escape(prefix)}(?:_(\d+))?$")


def numbered_layers(variable_names, prefix):
  """The file's layers Keras named `prefix`, `prefix_1`, ..., in number order.

  Args:
    variable_names: the file's flat variable names ('conv2d_3/kernel', or
      'encoder/conv2d_3/kernel' inside a nested model).
    prefix: the layer class's automatic name, e.g. 'conv2d'.

  Returns:
    list of layer paths (the names without their weight), e.g.
    ['conv2d_1', 'conv2d_2'] or ['encoder/conv2d', 'decoder/conv2d_1']: one
    counter runs across the nested models of one process.
  """
  pattern = _numbered(prefix)
  found = {}
  for name in variable_names:
    path = name.rsplit("/", 1)[0]
    match = pattern.match(path.rsplit("/", 1)[-1])
    if match:
      found[path] = int(match.group(1) or 0)
  return sorted(found, key=found.get)


def renumber(name_map, variable_names, prefixes):
  """`name_map` with its first-build numbers replaced by the file's.

  Args:
    name_map: (our layer, kind) -> a flat name whose numbered layers are
      named as a first build in a fresh process names them: 'conv2d',
      'conv2d_1', ... in creation order (under a nested model's path too).
    variable_names: the file's flat variable names.
    prefixes: the layer classes numbered, e.g. ('conv2d_transpose', 'conv2d').

  Returns:
    A map like `name_map` whose n-th layer of each prefix is the file's n-th:
    'conv2d_1/kernel' -> 'conv2d_5/kernel' in a file numbered from 4. A file
    with fewer such layers leaves the rest as they were, so the import names
    them as missing.
  """
  renames = {}
  for prefix in prefixes:
    found = numbered_layers(variable_names, prefix)
    first_build = [prefix] + [f"{prefix}_{i}" for i in range(1, len(found))]
    for ours, theirs in zip(first_build, found):
      nesting = theirs.rsplit("/", 1)[0] + "/" if "/" in theirs else ""
      renames[nesting + ours] = theirs

  def file_name(layer_name, kind):
    layer, _, weight = name_map(layer_name, kind).rpartition("/")
    return f"{renames.get(layer, layer)}/{weight}"
  return file_name
