# procscope: `sudo make run` to monitor, `sudo make test` for the test suite.
VENV ?= .venv
export VENV

.PHONY: setup run test bench clean
setup:
	@scripts/setup

run: setup
	$(VENV)/bin/procscope

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python bench/exec_rate.py
	$(VENV)/bin/python bench/cache_memory.py

clean:
	rm -rf $(VENV) .pytest_cache
