"""`kcompile.keras` is kcompile itself, so code written as `tf.keras.X` or `keras.X` runs
after `import kcompile as tf` / `import kcompile as keras`, and `from kcompile.keras.layers
import Dense` gives the very same class as `from kcompile.layers import Dense`."""
import importlib
import importlib.abc
import importlib.util
import sys

_PREFIX = __name__ + "."
_PKG = __name__.rsplit(".", 1)[0]


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves kcompile.keras.<x> to the already (or newly) imported kcompile.<x>."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_PREFIX):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(_PKG + "." + spec.name[len(_PREFIX):])

    def exec_module(self, module):
        pass


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.insert(0, _Alias())
sys.modules[__name__] = sys.modules[_PKG]
