"""Plugins: a user's own architectures, backbones, datasets, augmentations, distillation methods,
optimizers or schedules, registered without forking distillbench.

A plugin is a Python module that calls the ``register_*`` functions when it is imported. A study
names its plugins in ``plugins:`` (or ``--plugin``, which adds to that list), either as a module
importable from here (``my_lab.kd``) or as the path of a ``.py`` file; installed packages can
register through the entry-point group ``distillbench.plugins`` instead, which is loaded always.
The config carries the list, so worker processes, Ray tasks and a later ``report`` import the very
same plugins before they build anything.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from distillbench.errors import UserError

ENTRY_POINT_GROUP = "distillbench.plugins"

_loaded: dict[str, ModuleType] = {}  # by the name the config gives
_entry_points_loaded = False


def load_plugins(names: Iterable[str] = ()) -> list[ModuleType]:
    """Import the installed entry-point plugins (once per process) and the plugins ``names`` (each
    once, however it is spelt); a plugin that cannot be imported is a one-paragraph ``UserError``."""
    _load_entry_points()
    return [_load(canonical_plugin(name)) for name in names]


def canonical_plugin(name: str, base: Path | None = None) -> str:
    """``name`` as the config should keep it: a module name as given, a ``.py`` file's path made
    absolute (relative to ``base``, by default the working directory), so that every process and a
    later ``report`` import the same file wherever they run."""
    if not name.endswith(".py"):
        return name
    path = Path(name).expanduser()
    return str(path if path.is_absolute() else ((base or Path.cwd()) / path).resolve())


def _load(name: str) -> ModuleType:
    if name not in _loaded:
        try:
            _loaded[name] = _import_file(Path(name)) if name.endswith(".py") else _import_module(name)
        except UserError:
            raise
        except Exception as exc:  # the plugin's own code failed: say which plugin and what it raised
            raise UserError(
                f"plugin {name!r} failed while being imported: {type(exc).__name__}: {exc}. Fix the plugin "
                "(import it in Python to see the whole traceback), or remove it from plugins / --plugin."
            ) from exc
    return _loaded[name]


def _import_module(name: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise UserError(f"plugin {name!r}: give a module name (my_lab.kd) or the path of a .py file.")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise  # the plugin itself imports something missing: reported as its failure
        raise UserError(
            f"plugin {name!r}: no module of that name can be imported here (sys.path starts at "
            f"{sys.path[0] or '.'}). Install it (pip install -e YOUR_PACKAGE), add its directory to PYTHONPATH, "
            "or give the path of its .py file."
        ) from None


def _import_file(path: Path) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise UserError(f"plugin {str(path)!r}: no such file. Give the path of an existing .py file, or a module name.")
    # The same name in every process (workers unpickle the plugin's objects by it), unique per file.
    module_name = f"distillbench_plugin_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if module_name in sys.modules:  # imported already (another spelling of the same file)
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"plugin {str(path)!r}: Python cannot load it as a module; give a .py source file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as exc:
            raise UserError(
                f"the installed plugin {entry.name!r} ({entry.value}, entry point group {ENTRY_POINT_GROUP}) failed "
                f"while being imported: {type(exc).__name__}: {exc}. Update or uninstall the package that provides it."
            ) from exc
    _entry_points_loaded = True  # only once all loaded: a failed one is tried again, and reported again
