"""Name -> class tables that each class fills in itself, by a decorator.

The extension points (backbones, meta-architectures) register where they are
defined, so adding one edits no central table. A package of such classes
imports all its modules (`import_all_modules`), so every decorator in it has
run once the package is imported; a class defined elsewhere, e.g. in a test,
registers when its own module is imported.
"""

import importlib
import pkgutil


class Registry:
  """Classes by the config name that selects them."""

  def __init__(self, field):
    """An empty registry.

    Args:
      field: the config field whose value is the name, e.g.
        'feature_extractor.type'; errors start with it.
    """
    self._field = field
    self._classes = {}

  def add(self, name, cls):
    """Registers `cls` under `name`.

    Registering the same class again (a module imported twice, e.g. by a
    reload) is allowed; that is told apart by module and qualified name.

    Raises:
      ValueError: another class is registered under `name`.
    """
    known = self._classes.get(name)
    if known is not None and _where(known) != _where(cls):
      raise ValueError(f"{self._field} '{name}' is registered twice "
                       f"({_where(known)} and {_where(cls)})")
    self._classes[name] = cls

  def remove(self, name):
    """Forgets `name` (a test undoing its toy registration); no-op if absent."""
    self._classes.pop(name, None)

  def get(self, name):
    """The class registered under `name`.

    Raises:
      ValueError: nothing is; the message lists the registered names.
    """
    if name not in self._classes:
      raise ValueError(f"{self._field}: unknown '{name}'; allowed: "
                       f"{', '.join(self.names())}")
    return self._classes[name]

  def names(self):
    """Sorted registered names."""
    return sorted(self._classes)


def _where(cls):
  return f"{cls.__module__}.{cls.__qualname__}"


def import_all_modules(package_name, package_path):
  """Imports every module of a package, so that their decorators run.

  Args:
    package_name: the package's `__name__`.
    package_path: the package's `__path__`.
  """
  for module in pkgutil.iter_modules(package_path):
    importlib.import_module(f"{package_name}.{module.name}")
