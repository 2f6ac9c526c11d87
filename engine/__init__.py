"""Gavel's engine. Its hot modules may be compiled with mypyc (`make compile`, see docs/engine.md).

The .py files are the source of truth. When a module has a compiled extension beside it Python
imports that one; `GAVEL_PURE_PYTHON=1` makes every `engine.*` import use the .py source instead
(set it before the first `import engine`). `compiled_modules()` says which modules run compiled.
"""

import os
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    SOURCE_SUFFIXES,
    FileFinder,
    ModuleSpec,
    SourceFileLoader,
    SourcelessFileLoader,
)
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent


def _compiled_build_is_stale() -> bool:
    """True when a source of the compiled modules (or of the types they were compiled against) is
    newer than the oldest extension: those extensions would run old code, so none is used."""
    extensions = [*_HERE.glob("*.so"), *_HERE.glob("book/*.so")]
    if not extensions:
        return False
    sources = [p for p in (*_HERE.glob("*.py"), *_HERE.glob("book/*.py")) if p.name != "__init__.py"]
    return max(p.stat().st_mtime for p in sources) > min(p.stat().st_mtime for p in extensions)


PURE_PYTHON = os.environ.get("GAVEL_PURE_PYTHON", "") not in ("", "0")
if not PURE_PYTHON and _compiled_build_is_stale():
    warnings.warn(
        "engine: the compiled extensions are older than their sources; running the .py sources "
        "(run `make compile` to rebuild)",
        RuntimeWarning,
        stacklevel=2,
    )
    PURE_PYTHON = True


class _SourceOnlyFinder:
    """Finds `engine.*` modules among .py (and .pyc) files only, never extension modules."""

    @staticmethod
    def find_spec(
        fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if not fullname.startswith("engine.") or path is None:
            return None
        for entry in path:
            finder = FileFinder(
                entry, (SourceFileLoader, SOURCE_SUFFIXES), (SourcelessFileLoader, BYTECODE_SUFFIXES)
            )
            spec = finder.find_spec(fullname, target)
            if spec is not None:
                return spec
        return None


if PURE_PYTHON and not any(isinstance(f, _SourceOnlyFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _SourceOnlyFinder())


def compiled_modules() -> list[str]:
    """The `engine.*` modules imported so far that run as compiled extensions, sorted."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if (name == "engine" or name.startswith("engine."))
        and str(getattr(module, "__file__", "") or "").endswith((".so", ".pyd"))
    )
