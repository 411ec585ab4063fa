# procscope: `sudo make run` to monitor, `sudo make test` for the test suite.
VENV ?= .venv
export VENV

.PHONY: setup run test bench screenshots snapshots proto clean
setup:
	@scripts/setup

run: setup
	$(VENV)/bin/procscope

# The import contracts (pyproject.toml), the linter, the formatter's check and the type checker, then every test.
test: setup
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Every benchmark runs (each prints RESULT PASS/FAIL); the status is non-zero if any failed.
bench: setup
	@rc=0; for b in cost exec_rate exit_cpu monitor_storm startup usage_cost cache_memory ui_frame replay_scale agent fleet; do \
	  $(VENV)/bin/python bench/$$b.py || rc=1; done; exit $$rc

# SVGs of the monitor replaying tests/data/demo.jsonl (scripts/record-demo records it, as root).
screenshots: setup
	$(VENV)/bin/python scripts/screenshots

# Regenerates the snapshot tests' baselines (tests/__snapshots__/) after a wanted change in the UI's looks.
snapshots: setup
	$(VENV)/bin/python -m pytest -q tests/test_snapshots.py --snapshot-update

# Tetragon's gRPC API as procscope serves it: the modules grpcio-tools generates from procscope/api/tetragon.proto.
proto: setup
	$(VENV)/bin/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. procscope/api/tetragon.proto

clean:
	rm -rf $(VENV) .pytest_cache
