"""get_file: a file from the kcompile cache folder, downloaded when missing and online."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request

DOWNLOAD_TIMEOUT = 15.0     # seconds without an answer before giving up


class DownloadError(OSError):
    """A file the cache does not hold could not be downloaded."""


def kcompile_home() -> str:
    """$KCOMPILE_HOME, or ~/.kcompile."""
    return os.environ.get("KCOMPILE_HOME") or os.path.join(os.path.expanduser("~"), ".kcompile")


def cache_folder(subdir="datasets") -> str:
    return os.path.join(kcompile_home(), subdir)


def _hash(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_file(fname=None, origin=None, file_hash=None, cache_subdir="datasets",
             hash_algorithm="auto", cache_dir=None, force_download=False):
    """The local path of `fname`: from `cache_dir/cache_subdir` ($KCOMPILE_HOME/datasets by
    default) when there, else downloaded from `origin` (written under a temporary name,
    checked against `file_hash` when given, then renamed). Offline, raises DownloadError
    saying where to put the file."""
    if not fname and not origin:
        raise ValueError("get_file needs `fname` or `origin`")
    fname = os.fspath(fname or os.path.basename(origin.split("?")[0]))
    folder = os.path.join(cache_dir or kcompile_home(), cache_subdir) if not \
        os.path.isabs(fname) else os.path.dirname(fname)
    path = fname if os.path.isabs(fname) else os.path.join(folder, fname)
    if os.path.exists(path) and not force_download:
        return path
    if origin is None:
        raise FileNotFoundError(f"{path} does not exist and no download origin was given")
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        try:
            with urllib.request.urlopen(origin, timeout=DOWNLOAD_TIMEOUT) as r, \
                    open(tmp, "wb") as out:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise DownloadError(
                f"{os.path.basename(path)} is not in the cache and could not be downloaded "
                f"from {origin} ({getattr(e, 'reason', e)}). If this machine is offline, "
                f"download that file on another machine and put it at {path} (the cache "
                f"folder is $KCOMPILE_HOME/{cache_subdir}, ~/.kcompile/{cache_subdir} when "
                f"KCOMPILE_HOME is not set).") from e
        if file_hash:
            algorithm = hash_algorithm if hash_algorithm != "auto" else (
                "sha256" if len(file_hash) == 64 else "md5")
            got = _hash(tmp, algorithm)
            if got != file_hash:
                raise DownloadError(f"The file downloaded from {origin} is corrupt: its "
                                    f"{algorithm} is {got}, expected {file_hash}")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return path
