"""The package's shape: its layers (import-linter contracts in pyproject.toml), the size of
its modules, and how backends are found."""

import os
import pathlib
import pkgutil

import pytest

import lineax_sparse
from lineax_sparse import backends
from lineax_sparse.backends.base import AbstractBackend
from lineax_sparse.backends.catalog import backend_class


ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = pathlib.Path(lineax_sparse.__file__).parent
#: A module longer than this holds more than one idea (and is split).
MAX_LINES = 400


def test_import_contracts_are_kept(monkeypatch):
    """Imports go only downward through the layers, backends never import jax nor each
    other, and no subpackage has a cycle (import-linter reads the contracts from
    pyproject.toml; imports inside functions count too)."""
    lint = pytest.importorskip("importlinter.cli")
    monkeypatch.chdir(ROOT)
    assert lint.lint_imports(no_cache=True, no_logo=True) == 0


def test_no_module_is_longer_than_one_idea():
    lengths = {
        str(path.relative_to(SOURCE)): len(path.read_text().splitlines())
        for path in SOURCE.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_every_backend_package_is_found_by_its_name():
    """A backend is one package exporting `Backend`: no list names them."""
    names = [info.name for info in pkgutil.iter_modules(backends.__path__) if info.ispkg]
    names = [name for name in names if name != "numerics"]
    assert {"amg", "cholmod", "petsc", "superlu"} <= set(names)
    for name in names:
        if name == "petsc" and os.environ.get("LXS_REQUIRE_PETSC") != "1":
            pytest.importorskip("petsc4py")
        if name == "pardiso" and os.environ.get("LXS_REQUIRE_MKL") != "1":
            from lineax_sparse.backends.pardiso.locate import candidates

            if not candidates():
                continue
        cls = backend_class(name)
        assert issubclass(cls, AbstractBackend)
        assert not getattr(cls, "__abstractmethods__", None), (name, cls.__abstractmethods__)


def test_a_missing_native_library_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_pyamg(name, *args, **kwargs):
        if name == "pyamg" or name.startswith("pyamg."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    for module in [m for m in list(__import__("sys").modules) if "backends.amg" in m]:
        monkeypatch.delitem(__import__("sys").modules, module)
    monkeypatch.setattr(builtins, "__import__", without_pyamg)
    with pytest.raises(ImportError, match=r"`amg` backend .* needs `pyamg`: `pip install pyamg`"):
        backend_class("amg")


def test_declared_factor_statistics_are_the_backends_own():
    """The JAX side reads `backends.statistics.DECLARED` at trace time (no backend is
    imported then); each backend class reports exactly its entry."""
    from lineax_sparse.backends.statistics import DECLARED

    names = [info.name for info in pkgutil.iter_modules(backends.__path__) if info.ispkg]
    for name in names:
        if name == "numerics":
            continue
        if name == "petsc" and os.environ.get("LXS_REQUIRE_PETSC") != "1":
            continue
        if name == "pardiso" and os.environ.get("LXS_REQUIRE_MKL") != "1":
            from lineax_sparse.backends.pardiso.locate import candidates

            if not candidates():
                continue
        if name == "petsc":
            pytest.importorskip("petsc4py")
        assert backend_class(name).factor_statistics == DECLARED.get(name, {}), name
    assert set(DECLARED) <= set(names)
