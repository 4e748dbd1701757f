# The two commands of the README: `make demo` (main job) and `make test`. Both set up first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.odd-one-out-setup

.PHONY: setup test demo lock clean-venv
setup: $(STAMP)

# Re-run setup only when something it installs from changed (the interface packages' sources included).
INTERFACES := $(wildcard interfaces/*/package.xml interfaces/*/CMakeLists.txt interfaces/*/msg/*.msg)
$(STAMP): requirements.lock requirements-nodeps.txt setup.py setup.cfg package.xml scripts/setup.sh \
          scripts/build_interfaces.sh scripts/fix_wheel_cmake.py $(INTERFACES)
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
