# learnops entry points. `make test` installs everything it needs, then runs every tier but bench.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
# Build cache outside the repo (Kubernetes, helm, kind), keyed by version.
LEARNOPS_CACHE ?= $(HOME)/.cache/learnops
CACHE := $(LEARNOPS_CACHE)
export LEARNOPS_CACHE
# Tools built by `make deps` (kubectl, helm, kind, etcd, kube-apiserver, ...).
export PATH := $(CACHE)/bin:$(PATH)
# Resolved when a recipe runs, i.e. after `deps` may have installed uv.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST = $(UV) run --frozen pytest

.PHONY: help deps lint test test-tier test-worker-majors test-unit bench cluster-up cluster-down demo crds

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps: ## install every prerequisite (apt, uv + Python deps, Go-built Kubernetes, helm, kind, base image)
	tests/harness/install-deps.sh

lint: ## ruff + mypy --strict + the import contract (deployables never import each other)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy tests operator images/dump images/learning-worker
	$(UV) run --frozen lint-imports

# Extra pytest arguments, e.g. `make test PYTEST_ARGS=tests/e2e`.
PYTEST_ARGS ?=
# pytest-xdist workers; 0 (the default) runs the suite in one process. On this 2-core machine
# 4 workers plus the majors beside them drove the load average past 40 and the tests' own
# waits ran out (measured in a clean clone, 2026-12-02), so parallel runs are opt-in;
# tests/harness/parallel.py keeps tests that share an expensive resource on one worker.
TEST_WORKERS ?= 0
# The worker's schema and queries once more on the oldest and newest supported server (the soak,
# a load test, runs on the default server only).
WORKER_MAJORS ?= 13 18
WORKER_MAJOR_TESTS = tests/postgres/test_ground_postgres.py $(wildcard tests/postgres/test_worker_*.py)
worker_major_pytest = env LEARNOPS_PG_MAJOR=$(1) $(PYTEST) -q -p no:cacheprovider \
  -k 'not soak and not chaos' $(WORKER_MAJOR_TESTS)

# Lanes: tiers that run in pytest processes of their own, beside the rest of the suite. Each
# lane has its own session fixtures (the kind cluster lives in the e2e lane, the control plane
# in the main one) and ends them when its tiers are done. The e2e tier mostly waits for pods
# (20-50 % of the 2 cores busy), so side by side the run takes little more than its longest
# lane. PYTEST_ARGS or TEST_WORKERS turn the lanes off unless LANES is given too.
LANES ?= $(if $(PYTEST_ARGS)$(filter-out 0,$(TEST_WORKERS)),,tests/e2e tests/postgres)
lane_pytest = $(PYTEST) -m 'not bench' -p no:cacheprovider --durations=15 $(1)

# The suite (on $(TEST_WORKERS) xdist workers if set) and, beside it, each of $(LANES) and the
# worker's tests on each of $(WORKER_MAJORS) (their output follows the suite's); fails if any
# fails; Ctrl-C or SIGTERM stops all of them, each after its teardown (tests/harness/together.py).
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)
test: deps lint ## the whole suite except benchmarks (what CI runs)
	$(UV) run --frozen python -m tests.harness.together \
	  $(foreach lane,$(LANES),--beside "$(lane)=$(call lane_pytest,$(lane))") \
	  $(foreach major,$(WORKER_MAJORS),--beside "PostgreSQL-$(major)=$(call worker_major_pytest,$(major))") \
	  -- $(PYTEST) -m "not bench" $(XDIST) --durations=15 $(foreach lane,$(LANES),--ignore=$(lane)) $(PYTEST_ARGS)

# One tier the way `make test` runs it, e.g. `make test-tier TIER=e2e` (no deps, lint or majors).
TIER ?= unit
test-tier: ## one tier on the xdist workers: make test-tier TIER=unit|postgres|cluster|container|e2e
	$(PYTEST) -m "not bench" $(XDIST) --durations=15 tests/$(TIER) $(PYTEST_ARGS)

test-worker-majors: ## the worker's PostgreSQL tests on servers $(WORKER_MAJORS) (LEARNOPS_PG_MAJOR)
	$(foreach major,$(WORKER_MAJORS),$(call worker_major_pytest,$(major)) && ) true

test-unit: ## only the tests that need nothing
	$(PYTEST) -m unit

bench: deps ## benchmarks (tests/bench); figures are printed
	$(PYTEST) -m bench -s -p no:cacheprovider tests/bench

cluster-up: deps ## start the local control plane; prints the absolute kubeconfig path
	@$(UV) run --frozen python -m tests.harness.kube up

cluster-down: ## stop the local control plane
	@$(UV) run --frozen python -m tests.harness.kube down

demo: deps ## the whole system: PostgreSQL, cluster, chart, a backup, a worker batch; cleans up
	$(UV) run --frozen python -m tests.demo

crds: ## copy the CRD single source into the chart (a test fails until they match)
	cp manifests/crds/learnops.io_databasebackups.yaml manifests/crds/learnops.io_databaserestores.yaml charts/learnops/files/crds/
