# One-command set-up: `make demo` runs the main job, `make test` passes the tests.
# Both create .venv, install the pinned requirements and the package (editable), idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.sfm_ros_installed

# Every process started from here that touches DDS stays on this machine, in its own domain.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42

.PHONY: venv test test-fast demo bench clean-venv tf2_msgs

venv: $(STAMP)

$(STAMP): requirements.txt setup.py package.xml tools/build_tf2_msgs.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	bash tools/build_tf2_msgs.sh $(VENV)
	touch $(STAMP)

tf2_msgs: venv
	bash tools/build_tf2_msgs.sh $(VENV)

test: venv
	$(PY) -m pytest -q test

# The tests without the slow ones (training, nodes, subprocesses: marked `slow`), for a quick loop.
test-fast: venv
	$(PY) -m pytest -q -m "not slow" test

demo: venv
	$(PY) -m sfm_ros.cli.demo --output demo_output

bench: venv
	$(PY) bench/run_all.py

clean-venv:
	rm -rf $(VENV)
