"""Compile the engine's pure core with mypyc, in place (`make compile`).

The .py files stay the source of truth: this builds a C extension beside each listed module
(`engine/book/lot.cpython-311-*.so`, …) plus one shared library at the repository root
(`gavel_core__mypyc.*.so`). Python imports an extension before a .py of the same name; delete the
extensions (`make clean-compiled`) or set GAVEL_PURE_PYTHON=1 to run the interpreted sources.

    .venv/bin/python build_mypyc.py [--quiet]  # build in place
    .venv/bin/python build_mypyc.py --list     # print the compiled modules' paths
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# The modules whose speed matters: the bid decision, the book around it, the writer loop and
# the journal. The rest (events and commands are NamedTuples, errors are exception classes with
# overridable class attributes, settle/ is not on the bid path) stays interpreted.
MODULES = [
    "engine/book/increments.py",
    "engine/book/states.py",
    "engine/book/session.py",
    "engine/book/lot.py",
    "engine/book/book.py",
    "engine/journal.py",
    "engine/engine.py",
]


def main() -> None:
    if "--list" in sys.argv[1:]:
        print(" ".join(MODULES))
        return
    from mypyc.build import mypycify
    from setuptools import setup

    quiet = ["--quiet"] if "--quiet" in sys.argv[1:] else []
    setup(
        name="gavel-core",
        ext_modules=mypycify(MODULES, opt_level="3", group_name="gavel_core", target_dir="build/mypyc"),
        script_args=[*quiet, "build_ext", "--inplace", "--build-temp", "build/mypyc-temp"],
    )
    # An unchanged extension is copied with its old mtime; engine/__init__.py ignores extensions
    # older than any engine source, so mark them all as built now (they were checked just now).
    for pattern in ("gavel_core__mypyc.*.so", "engine/*.so", "engine/book/*.so"):
        for extension in ROOT.glob(pattern):
            os.utime(extension)


if __name__ == "__main__":
    main()
