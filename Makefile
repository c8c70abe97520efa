# learnops entry points. `make test` installs everything it needs, then runs every tier but bench.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
UV ?= uv
PYTEST := $(UV) run --frozen pytest

.PHONY: help deps lint test test-unit bench cluster-up cluster-down demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps: ## install every prerequisite (apt, uv, Go-built Kubernetes, helm, base image)
	tests/harness/install-deps.sh

lint: ## ruff + mypy --strict
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy tests operator images/dump images/learning-worker

test: deps lint ## the whole suite except benchmarks (what CI runs)
	$(PYTEST) -m "not bench"

test-unit: ## only the tests that need nothing
	$(PYTEST) -m unit

bench: deps ## benchmarks (tests/bench), figures printed to stdout
	$(PYTEST) -m bench -s -p no:cacheprovider tests/bench
