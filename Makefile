# Surge — the commands that matter. Everything installs itself on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: venv debs newman run test unit integration bench bench-scale k8s-check clean

# Debian packages the real servers in tests come from (package:binary)
TEST_DEBS := victoria-metrics:victoria-metrics chromium:chromium nginx:nginx wrk:wrk nodejs:node npm:npm prometheus:prometheus

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

debs:
	scripts/ensure-debs.sh $(TEST_DEBS)

# the Node tools the importer oracles run (newman), pinned in tests/package-lock.json
newman: debs
	@test -x tests/node_modules/.bin/newman || npm ci --prefix tests --no-audit --no-fund --ignore-scripts

## make run: the whole stack locally plus a demo run; Ctrl-C stops everything
run: venv
	$(VENV)/bin/surge up --demo plans/demo.yaml

## make test: from a fresh machine to a green suite (venv, packages, nats-server, tests)
test: venv debs newman k8s-check
	@$(VENV)/bin/nats-server --version
	$(PY) -m pytest tests -q --durations=25  # the slowest tests, so the suite stays under 20 min

## make k8s-check: render every kustomize overlay and validate it offline, strictly
k8s-check: venv
	PYTHON=$(PY) scripts/k8s-check.sh

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv debs newman
	$(PY) -m pytest tests/integration -q

## make bench: Surge's engine beside wrk and Locust against one pinned nginx (figures, never pass/fail)
## SURGE_BENCH_RSS_S=600 for the full 10-minute RSS run; SURGE_BENCH_WRK2=/path/to/wrk2 adds wrk2 beside the
## open-loop rows (it is not packaged); results in bench/results/latest.json
bench: venv debs
	@$(PY) -c 'import locust' 2>/dev/null || $(PY) -m pip install -q -e '.[test,bench]'
	$(PY) -m bench

## make bench-scale: one coordinator (and two mergers) against N simulated generators: CPU, RSS,
## snapshot lag and completeness, ack latency, report exactness per N; results in bench/results/scale.json
## (SCALE_POINTS=200x1,1000x5 SCALE_SECONDS=30 to choose; a point "2000x1m2" runs two mergers)
SCALE_POINTS ?= 200x1,500x1,1000x1,500x5,1000x5,2000x1m2
SCALE_SECONDS ?= 30
bench-scale: venv
	$(PY) -m bench.scale --points $(SCALE_POINTS) --seconds $(SCALE_SECONDS)

clean:
	rm -rf .surge .pytest_cache
