"""One module per dataset; each registers its converter (convert_lib.register).

Importing this package imports every module in it, so a new dataset is one
new module here and nothing else to edit.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")
