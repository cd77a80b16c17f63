"""One module per dataset; each registers its converter (convert_lib.register).

Importing this package imports every module in it, so a new dataset is one
new module here and nothing else to edit.
"""

from fast_seg.core import registry

registry.import_all_modules(__name__, __path__)
