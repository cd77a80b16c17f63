"""Meta-architectures; importing the package registers every one of them.

Each module of the package is imported here, so a new architecture is a new
module whose class is decorated with core.model.register (plus its message
in the `model` oneof of protos/model.proto): nothing to list.
"""

from fast_seg.core import registry

registry.import_all_modules(__name__, __path__)
