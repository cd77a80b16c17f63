"""What importing from one project needs, and the registry of projects."""

import collections

from fast_seg.core import registry

# `description` names the file in messages; `adapt(model_config, shapes)`
# sets the config fields that make fast_seg's graph compute that project's
# and returns the name map (third_party/) of the model: (our layer name,
# weight kind) -> the file's variable name. `shapes` ({variable: shape} of
# the file) tells which of the project's models the file holds and how it
# numbers unnamed layers; adapt raises ValueError, naming the model and the
# config to use, when the file and the config's model do not go together.
# `is_training_state(name)` tells which file variables are not model weights
# (step, optimizer slots).
Source = collections.namedtuple(
    "Source", ["description", "adapt", "is_training_state"])

# One module per project in projects/ registers its Source here, under the
# name --from takes.
SOURCES = registry.Registry("--from")


def no_training_state(unused_name):
  """Keras .h5 weights: the optimizer state is not among the layers."""
  return False
