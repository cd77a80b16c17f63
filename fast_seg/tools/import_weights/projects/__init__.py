"""One module per project whose trained models import; each registers its
Source in source.SOURCES when the package is imported."""

from fast_seg.core import registry

registry.import_all_modules(__name__, __path__)
