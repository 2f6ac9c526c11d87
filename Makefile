# Gavel: every target creates .venv from the pinned lock file when it is missing or stale.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: run test bench lint lock clean unit

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $(STAMP)

run: $(STAMP)
	$(PY) run.py $(ARGS)

# The admin UI's browser tests drive Debian's chromium (Playwright's own browser download is not
# used); CI runs as root on a fresh machine. The CJK font makes the back office's labels readable.
$(CHROMIUM):
	apt-get update && apt-get install -y chromium fonts-wqy-zenhei

test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict engine/
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

unit: $(STAMP)
	$(VENV)/bin/pytest -q tests/engine $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true
	$(VENV)/bin/mypy --strict engine/

bench: $(STAMP)
	$(PY) benchmarks/bench_book.py
	$(PY) benchmarks/bench_engine.py

lock:
	$(PYTHON) -m venv /tmp/gavel-lock && /tmp/gavel-lock/bin/pip install --quiet --pre -r requirements.in
	{ echo "# Pinned dependency tree for Python 3.11 (pip freeze of requirements.in). Regenerate: make lock"; /tmp/gavel-lock/bin/pip freeze; } > requirements.lock

clean:
	rm -rf $(VENV) var
