# The two commands of the README: `make demo` (main job) and `make test`. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.odd-one-out-setup

.PHONY: setup test demo lock clean-venv
setup: $(STAMP)

# Re-run setup only when something it installs from changed.
$(STAMP): requirements.lock requirements-nodeps.txt setup.py setup.cfg package.xml scripts/setup.sh
	scripts/setup.sh $(VENV)
	@touch $@

test: setup
	$(PY) -m pytest

demo: setup
	$(VENV)/bin/odd-one-out demo --out runs/demo

lock:
	scripts/lock.sh

clean-venv:
	rm -rf $(VENV)
