"""The on-disk cache of compiled objects.

An entry is the object code of one module plus a JSON description of its
entry points, keyed by a hash of the graphs, the compiler's own source, the
host CPU and the llvmlite version. Files are written to a temporary name and
renamed, and carry a checksum: a truncated, corrupt or mismatched entry is
ignored (and rebuilt), never loaded.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import struct
import tempfile

MAGIC = b"KCOBJ1\n"


def cache_dir() -> pathlib.Path | None:
    if os.environ.get("KCOMPILE_NO_CACHE"):
        return None
    base = os.environ.get("KCOMPILE_CACHE_DIR")
    if base:
        return pathlib.Path(base)
    home = os.environ.get("KCOMPILE_HOME") or os.path.join(os.path.expanduser("~"), ".kcompile")
    return pathlib.Path(home) / "cache"


@functools.cache
def compiler_version() -> str:
    """A hash of the compiler's own sources: a changed compiler never reuses old objects."""
    h = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parent.parent
    for pkg in ("ir", "codegen", "runtime"):
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _path(key: str):
    d = cache_dir()
    return None if d is None else d / key[:2] / f"{key}.kco"


def contains(key: str) -> bool:
    """Whether an entry for key exists (load() still checks it is intact)."""
    path = _path(key)
    return path is not None and path.exists()


def load(key: str):
    """(object bytes, metadata) for key, or None when absent or not intact."""
    path = _path(key)
    if path is None or not path.exists():
        return None
    try:
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            return None
        body = data[len(MAGIC):]
        digest, rest = body[:32], body[32:]
        if hashlib.sha256(rest).digest() != digest:
            return None
        (klen,) = struct.unpack("<I", rest[:4])
        stored_key = rest[4:4 + klen].decode()
        if stored_key != key:
            return None
        rest = rest[4 + klen:]
        (mlen,) = struct.unpack("<I", rest[:4])
        meta = json.loads(rest[4:4 + mlen].decode())
        return rest[4 + mlen:], meta
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return None


def remove(key: str) -> None:
    """Drop the entry for key, if there is one."""
    path = _path(key)
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass        # absent, or another process removed it first


def store(key: str, obj: bytes, meta: dict) -> None:
    path = _path(key)
    if path is None:
        return
    kb = key.encode()
    mb = json.dumps(meta).encode()
    rest = struct.pack("<I", len(kb)) + kb + struct.pack("<I", len(mb)) + mb + obj
    data = MAGIC + hashlib.sha256(rest).digest() + rest
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass    # a cache that cannot be written only costs a recompile
