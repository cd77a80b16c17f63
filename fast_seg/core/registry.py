"""The one name -> entry table type of every extension point.

Backbones, meta-architectures, pixel losses, dataset converters and export
formats register where they are defined, each in its own Registry, so
adding one edits no central table. A package of such entries imports all
its modules (`import_all_modules`), so every registration in it has run
once the package is imported; an entry defined elsewhere, e.g. in a test,
registers when its own module is imported, and a test removes its toy entry
again with `remove`.
"""

import importlib
import pkgutil


class Registry:
  """Entries (classes, build functions, writers) by the name that selects them.

  Names iterate in registration order (export formats are written in it);
  `names()` is sorted, for messages.
  """

  def __init__(self, field):
    """An empty registry.

    Args:
      field: the config field or flag whose value is the name, e.g.
        'feature_extractor.type' or '--dataset'; errors start with it.
    """
    self._field = field
    self._entries = {}

  def add(self, name, entry):
    """Registers `entry` under `name`.

    Registering the same entry again (a module imported twice, e.g. by a
    reload) is allowed; that is told apart by module and qualified name.

    Raises:
      ValueError: another entry is registered under `name`.
    """
    known = self._entries.get(name)
    if known is not None and _where(known) != _where(entry):
      raise ValueError(f"{self._field} '{name}' is registered twice "
                       f"({_where(known)} and {_where(entry)})")
    self._entries[name] = entry

  def remove(self, name):
    """Forgets `name` (a test undoing its toy registration); no-op if absent."""
    self._entries.pop(name, None)

  def get(self, name):
    """The entry registered under `name`.

    Raises:
      ValueError: nothing is; the message lists the registered names.
    """
    if name not in self._entries:
      raise ValueError(f"{self._field}: unknown '{name}'; allowed: "
                       f"{', '.join(self.names())}")
    return self._entries[name]

  def names(self):
    """Sorted registered names."""
    return sorted(self._entries)

  def items(self):
    """(name, entry) pairs in registration order."""
    return list(self._entries.items())

  def __contains__(self, name):
    return name in self._entries

  def __iter__(self):
    """The names, in registration order."""
    return iter(list(self._entries))

  def __len__(self):
    return len(self._entries)


def _where(entry):
  """Where an entry was defined: a class's or function's module and name;
  a tuple of them (a writer's functions) field by field."""
  if hasattr(entry, "__qualname__"):
    return f"{entry.__module__}.{entry.__qualname__}"
  if isinstance(entry, tuple):
    return "(" + ", ".join(_where(part) for part in entry) + ")"
  return repr(entry)


def import_all_modules(package_name, package_path):
  """Imports every module of a package, so that their decorators run.

  Args:
    package_name: the package's `__name__`.
    package_path: the package's `__path__`.
  """
  for module in pkgutil.iter_modules(package_path):
    importlib.import_module(f"{package_name}.{module.name}")
