"""What importing from one project needs, and the registry of projects."""

import collections

from fast_seg.core import registry

# `description` names the file in messages; `adapt(model_config)` sets the
# config fields that make fast_seg's graph compute that project's and
# returns the name map (third_party/) of the model: (our layer name, weight
# kind) -> the file's variable name; `is_training_state(name)` tells which
# file variables are not model weights (step, optimizer slots);
# `bind_to_file(name_map, variable names)`, optional, returns the map for
# one file, for projects whose files differ in names their code does not
# fix (layers that Keras numbers when the model is built).
Source = collections.namedtuple(
    "Source", ["description", "adapt", "is_training_state", "bind_to_file"],
    defaults=(None,))

# One module per project in projects/ registers its Source here, under the
# name --from takes.
SOURCES = registry.Registry("--from")


def no_training_state(unused_name):
  """Keras .h5 weights: the optimizer state is not among the layers."""
  return False
