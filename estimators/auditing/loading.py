r"""Finding the function to audit: ``FILE.py:FUNCTION`` or ``MODULE:FUNCTION`` (dotted attributes allowed)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

__all__ = ["load_function"]


def _attribute(obj, path: str, where: str):
    for part in path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{where} has no attribute {part!r} (looking for {path!r})") from None
    return obj


def load_function(spec: str):
    r"""The callable named by ``spec``: ``path/to/file.py:name`` or ``package.module:name``.

    ``name`` may be dotted (``Loss.tc`` for a static method, ``LOSS.tc`` for a module-level
    instance's method). A file is imported as a fresh module with its folder on ``sys.path`` (so its
    own imports work); errors name the file and what is missing.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"the function must be given as FILE.py:FUNCTION or MODULE:FUNCTION, got {spec!r}")
    target, _, name = spec.rpartition(":")
    if not target or not name:
        raise ValueError(f"the function must be given as FILE.py:FUNCTION or MODULE:FUNCTION, got {spec!r}")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {target}")
        module_name = f"_audited_{path.stem}_{abs(hash(str(path.resolve()))) % 10**8}"
        spec_ = importlib.util.spec_from_file_location(module_name, path)
        if spec_ is None or spec_.loader is None:
            raise ValueError(f"{target} cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec_)
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec_.loader.exec_module(module)
        except Exception as exc:  # the user's module failed to import: say so, without our traceback
            raise ValueError(f"importing {target} raised {type(exc).__name__}: {exc}") from None
        finally:
            sys.path.remove(str(path.resolve().parent))
        where = target
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ValueError(f"cannot import module {target!r}: {exc}") from None
        where = f"module {target}"
    fn = _attribute(module, name, where)
    if not callable(fn):
        raise ValueError(f"{spec} is a {type(fn).__name__}, not a function")
    return fn
