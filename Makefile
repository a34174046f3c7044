# citywall — two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test install install-test system-deps services bench clean

run: install
	$(PY) -m backend.cli run

test: install-test system-deps services
	$(PY) -m pytest -q tests

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# Debian packages the tests need (Chromium, CJK fonts, GStreamer RTSP test camera, ffmpeg, redis tools)
system-deps:
	bash scripts/system-deps.sh

# The real Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, database test) the tests talk to
services:
	bash scripts/ensure-services.sh

bench: install-test
	$(PY) bench/bench_cases.py
	$(PY) bench/bench_sla.py
	$(PY) bench/bench_evaluation.py

clean:
	rm -rf $(VENV) var tests/artifacts
