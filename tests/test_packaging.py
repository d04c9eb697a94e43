"""The distribution adds one top-level import name: the compiler's folders install
inside `kcompile` (setup.py), and every package of the source tree is installed."""
import pathlib
import runpy

import setuptools

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _setup_arguments(monkeypatch):
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.chdir(ROOT)
    runpy.run_path(str(ROOT / "setup.py"))
    return seen


def _installed_folder(name, package_dir):
    """Where setuptools takes package `name` from (its longest package_dir prefix)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in package_dir:
            return pathlib.Path(package_dir[prefix], *parts[i:])
    return pathlib.Path(*parts)


def test_one_top_level_name_and_every_package(monkeypatch):
    kw = _setup_arguments(monkeypatch)
    packages, package_dir = kw["packages"], kw["package_dir"]
    assert {p.split(".")[0] for p in packages} == {"kcompile"}
    taken = {_installed_folder(p, package_dir).as_posix() for p in packages}
    for p in packages:
        assert (ROOT / _installed_folder(p, package_dir) / "__init__.py").is_file(), p
    tree = {init.parent.relative_to(ROOT).as_posix()
            for folder in ("kcompile", "ir", "codegen", "runtime")
            for init in (ROOT / folder).rglob("__init__.py")}
    assert tree - taken == set(), f"packages not installed: {sorted(tree - taken)}"
    assert {package_dir[k] for k in ("kcompile.ir", "kcompile.codegen", "kcompile.runtime")} == \
        {"ir", "codegen", "runtime"}
