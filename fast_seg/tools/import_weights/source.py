"""What importing from one project needs, and the registry of projects."""

import collections

from fast_seg.core import registry

# `description` names the file in messages; `adapt(model_config)` sets the
# config fields that make fast_seg's graph compute that project's and
# returns the name map (third_party/) of the model: (our layer name, weight
# kind) -> the file's variable name; `is_training_state(name)` tells which
# file variables are not model weights (step, optimizer slots);
# `refuse_file(shapes)`, if given, returns why a file of that project cannot
# import (another of its models, named) or None, before anything is built.
Source = collections.namedtuple(
    "Source", ["description", "adapt", "is_training_state", "refuse_file"],
    defaults=(None,))

# One module per project in projects/ registers its Source here, under the
# name --from takes.
SOURCES = registry.Registry("--from")


def no_training_state(unused_name):
  """Keras .h5 weights: the optimizer state is not among the layers."""
  return False
