# Gavel: every target creates .venv from the pinned lock file when it is missing or stale.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

# The layers (.importlinter, docs/architecture.md) are checked by `lint-imports`; mypy --strict
# covers every product package and the two entry scripts.
MYPY_PACKAGES := engine/ shop/ community/ payments/ backoffice/ persistence/ web/ gateway/ admin/ composition/ run.py run_cluster.py

.PHONY: run cluster test bench lint lock clean unit compile clean-compiled app-load

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

# The engine's hot modules compiled with mypyc, in place (build_mypyc.py lists them). The .py files
# stay the source of truth: `make clean-compiled` or GAVEL_PURE_PYTHON=1 runs them interpreted, and
# extensions older than any engine source are ignored (see engine/__init__.py).
ENGINE_SOURCES := $(filter-out %/__init__.py,$(wildcard engine/*.py engine/book/*.py))
COMPILED := build/.compiled

$(COMPILED): $(STAMP) build_mypyc.py $(ENGINE_SOURCES)
	@if $(PY) build_mypyc.py --quiet; then touch $@; else \
	  $(MAKE) --no-print-directory clean-compiled; \
	  echo "mypyc build failed: the engine runs interpreted" >&2; fi

# The hub's send loop in C (gateway/_fanout.c: a broadcast's sends on two threads, docs/architecture.md),
# in place. Without a C compiler the gateway runs as before: every socket written on the loop thread.
FANOUT := build/.fanout

$(FANOUT): $(STAMP) build_fanout.py gateway/_fanout.c
	@mkdir -p build
	@if $(PY) build_fanout.py --quiet; then touch $@; else rm -f gateway/_fanout.*.so; \
	  echo "gateway/_fanout.c did not build: broadcasts write from the loop thread only" >&2; fi

compile: $(COMPILED) $(FANOUT)

clean-compiled:
	rm -rf build gavel_core__mypyc.*.so engine/*.so engine/book/*.so gateway/_fanout.*.so

# Byte-compiled sources: imports read them even where PYTHONDONTWRITEBYTECODE is set (as on this
# project's machines), which saves each start of run.py most of a second of compiling; a no-op when
# nothing changed (docs/performance.md, "`make run`: the first answer").
BYTECODE := $(PY) -m compileall -q $(MYPY_PACKAGES) benchmarks/

run: $(STAMP) $(COMPILED) $(FANOUT)
	@$(BYTECODE)
	$(PY) run.py $(ARGS)

# One engine and two gateways (ports 8000, 8001), supervised; docs/scaling.md.
cluster: $(STAMP) $(COMPILED) $(FANOUT)
	@$(BYTECODE)
	$(PY) run_cluster.py $(ARGS)

# The admin UI's browser tests drive Debian's chromium (Playwright's own browser download is not
# used); CI runs as root on a fresh machine. The CJK font makes the back office's labels readable.
$(CHROMIUM):
	apt-get update && apt-get install -y chromium fonts-wqy-zenhei

# The suite runs in TEST_WORKERS processes (pytest-xdist; each starts its own embedded MongoDB and
# Redis): most tests wait on servers and browsers, so three processes keep two cores busy (on
# 2026-12-07: 6 min 39 s with three, 7 min 52 s with two, the same 1,728 tests).
TEST_WORKERS ?= 3

test: $(STAMP) $(COMPILED) $(FANOUT) $(CHROMIUM)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy --strict $(MYPY_PACKAGES)
	@$(BYTECODE)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

unit: $(STAMP) $(COMPILED) $(FANOUT)
	$(VENV)/bin/pytest -q tests/engine tests/shop tests/backoffice $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy --strict $(MYPY_PACKAGES)

bench: $(STAMP) $(COMPILED) $(FANOUT)
	$(PY) benchmarks/bench_book.py --interpreted-too
	$(PY) benchmarks/bench_engine.py --interpreted-too

# Bidder-app users (page loads + a websocket) beside bidders on a fresh run.py for MINUTES; prints
# JSON: page-load p95 per request, the bids' ack p99 (benchmarks/app_load.py, docs/performance.md).
MINUTES ?= 2
APP_LOAD_USERS ?= 40
app-load: $(STAMP) $(COMPILED) $(FANOUT)
	$(PY) benchmarks/app_load.py --minutes $(MINUTES) --users $(APP_LOAD_USERS)

lock:
	$(PYTHON) -m venv /tmp/gavel-lock && /tmp/gavel-lock/bin/pip install --quiet --pre -r requirements.in
	{ echo "# Pinned dependency tree for Python 3.11 (pip freeze of requirements.in). Regenerate: make lock"; /tmp/gavel-lock/bin/pip freeze; } > requirements.lock

clean: clean-compiled
	rm -rf $(VENV) var
