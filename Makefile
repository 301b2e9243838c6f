# `make demo`: install into .venv and run the main job on the embedded default (Fashion-MNIST).
# `make test`: install into .venv and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA := /usr/share/datasets/fashion-mnist

.PHONY: install data demo test clean

# PyPI's torch 2.14.1 for x86_64 is the CUDA build: the venv takes 6.0 GiB. Say so before pip fills the disk.
VENV_KIB := 6815744
VENV_PARENT = $(dir $(abspath $(VENV)))

$(VENV)/.installed: pyproject.toml
	@test -d $(VENV) || { free=$$(df -Pk $(VENV_PARENT) 2>/dev/null | awk 'NR == 2 {print $$4}'); \
	  test -z "$$free" || test "$$free" -ge $(VENV_KIB) || \
	  { echo "error: installing needs about 6.5 GiB free under $(VENV_PARENT) (torch's CUDA build), $$((free / 1048576)) GiB are; free some or set VENV=DIR on a larger disk" >&2; exit 2; }; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Debian packages the real Fashion-MNIST; as root this installs it, otherwise it says what to run.
data:
	@test -f $(DATA)/train-images-idx3-ubyte.gz || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	    else echo "run: sudo apt-get install -y dataset-fashion-mnist" >&2; exit 1; fi; }

demo: install data
	$(PY) -m compress --target-latency 0.5x --out runs/demo --overwrite

test: install data
	$(PY) -m pytest -q --durations=10 tests

clean:
	rm -rf $(VENV) runs
