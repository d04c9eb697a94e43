"""Reading the datasets' .npz files without running arbitrary pickles."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

# Object arrays (the IMDB sequences) need pickle; only numpy's array reconstruction
# is allowed, so a tampered file cannot run code (as keras/src/datasets/npz_utils.py).
_ALLOWED = frozenset({("numpy", "ndarray"), ("numpy", "dtype"),
                      ("numpy.core.multiarray", "_reconstruct"),
                      ("numpy._core.multiarray", "_reconstruct"),
                      ("numpy.core.multiarray", "scalar"),        # lists of numpy ints
                      ("numpy._core.multiarray", "scalar")})


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Refusing to load {module}.{name} from a dataset file: "
                                     f"the file may be corrupt or malicious")


def _read_member(buf):
    try:
        return np.lib.format.read_array(buf, allow_pickle=False)
    except ValueError:
        buf.seek(0)
        version = np.lib.format.read_magic(buf)
        if version[0] == 1:
            np.lib.format.read_array_header_1_0(buf)
        elif version[0] in (2, 3):
            np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"Unsupported .npy version {version}") from None
        return _RestrictedUnpickler(buf).load()


def load_npz(path, keys) -> dict:
    """The arrays `keys` of the .npz at `path`; ValueError naming the file otherwise."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
            missing = [k for k in keys if k not in members]
            if missing:
                raise ValueError(f"{path} lacks the arrays {missing} (it holds "
                                 f"{sorted(members)})")
            return {k: _read_member(io.BytesIO(zf.read(members[k]))) for k in keys}
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, OSError) as e:
        raise ValueError(f"Cannot read {path}: not a valid .npz file ({e})") from e
