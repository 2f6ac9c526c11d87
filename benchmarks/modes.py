"""Which build of the engine a benchmark measured, and the same benchmark on the other build.

The engine's hot modules may run compiled (mypyc, `make compile`) or interpreted
(`GAVEL_PURE_PYTHON=1`, or no extensions built). Every benchmark says which ran; with
`--interpreted-too` a compiled run also runs itself again in a child process on the .py sources
(after its own measurements, never at the same time) and reports both side by side.
"""

import json
import os
import subprocess
import sys
from typing import Any

import engine


def mode() -> dict[str, Any]:
    """`mode` ("compiled" or "interpreted") and the compiled modules (call after importing them)."""
    compiled = engine.compiled_modules()
    return {"mode": "compiled" if compiled else "interpreted", "compiled_modules": compiled}


def run_interpreted(script: str, argv: list[str]) -> dict[str, Any]:
    """Run `script` with `argv` on the interpreted sources; its JSON output."""
    args = [a for a in argv if a != "--interpreted-too"]
    env = {**os.environ, "GAVEL_PURE_PYTHON": "1"}
    done = subprocess.run(
        [sys.executable, script, *args], env=env, check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def add_interpreted(result: dict[str, Any], script: str, keys: list[str]) -> None:
    """With a compiled `result`: the interpreted run under "interpreted", and compiled/interpreted
    ratios of `keys` under "speedup_vs_interpreted"."""
    if result["mode"] != "compiled":
        return
    other = run_interpreted(script, sys.argv[1:])
    result["interpreted"] = other
    result["speedup_vs_interpreted"] = {
        key: round(result[key] / other[key], 2) for key in keys if other.get(key)
    }
