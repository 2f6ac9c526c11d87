"""Build gateway/_fanout.c (the broadcast's two-thread send loop) in place (`make run`/`make test`).

The gateway runs without it (gateway/fanout.py falls back to one transport write per socket on the
loop thread), so a machine without a C compiler still runs; the broadcast then uses one core.

    .venv/bin/python build_fanout.py [--quiet]
"""

import sys

from setuptools import Extension, setup


def main() -> None:
    quiet = ["--quiet"] if "--quiet" in sys.argv[1:] else []
    setup(
        name="gavel-fanout",
        ext_modules=[
            Extension(
                "gateway._fanout",
                ["gateway/_fanout.c"],
                extra_compile_args=["-O2", "-pthread"],
                extra_link_args=["-pthread"],
            )
        ],
        script_args=[*quiet, "build_ext", "--inplace", "--build-temp", "build/fanout-temp"],
    )


if __name__ == "__main__":
    main()
