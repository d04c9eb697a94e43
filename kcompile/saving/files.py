"""Files: atomic writes, telling an HDF5 file from a .keras archive, clear read errors."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import zipfile
import zlib

import h5py

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, overwrite=True):
    """Yield a temporary path beside `path`; on success it replaces `path` in one
    rename, on any exception it is removed and `path` is left as it was."""
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(errno.EEXIST, f"{path} exists and overwrite=False", path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):       # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def file_kind(path) -> str:
    """'h5' or 'zip' for a readable model file; OSError / ValueError naming the path and
    the problem otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"No file found at {path}", path)
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory: kcompile loads .keras archives and HDF5 "
                         f"(.h5) files, not TensorFlow SavedModel folders")
    size = os.path.getsize(path)
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes): not an HDF5 file or a .keras archive")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(ZIP_SIGNATURE):
        return "zip"
    if head == HDF5_SIGNATURE or h5py.is_hdf5(path):
        return "h5"
    if zipfile.is_zipfile(path):
        return "zip"
    raise ValueError(f"{path} is not an HDF5 file or a .keras (zip) archive: it starts "
                     f"with {head!r}")


@contextlib.contextmanager
def read_h5(source, where=None):
    """Open an HDF5 file (path or file object) for reading; errors name `where`."""
    where = where or os.fspath(source)
    try:
        f = h5py.File(source, "r")
    except OSError as e:
        raise OSError(f"Cannot read {where}: the HDF5 file is truncated or corrupt ({e})") from e
    try:
        yield f
    except OSError as e:
        raise OSError(f"Cannot read {where}: the HDF5 file is truncated or corrupt ({e})") from e
    except KeyError as e:
        raise ValueError(f"Cannot read {where}: the file lacks an expected entry ({e})") from e
    finally:
        with contextlib.suppress(Exception):
            f.close()


@contextlib.contextmanager
def read_zip(path):
    path = os.fspath(path)
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"Cannot read {path}: not a valid .keras archive (truncated or "
                         f"corrupt zip: {e})") from e
    try:
        yield zf
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise ValueError(f"Cannot read {path}: the .keras archive is truncated or corrupt "
                         f"({e})") from e
    finally:
        zf.close()


def zip_member(zf, name, path) -> bytes:
    if name not in zf.namelist():
        raise ValueError(f"Cannot read {path}: the .keras archive has no {name} "
                         f"(it holds {zf.namelist()})")
    return zf.read(name)


def attr_text(value):
    """An HDF5 attribute holding text (bytes or str) as str."""
    if value is None:
        return None
    if hasattr(value, "decode"):
        return value.decode("utf-8")
    return str(value)
