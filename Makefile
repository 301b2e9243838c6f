# `make demo`: install into .venv and run the main job on the embedded default (Fashion-MNIST).
# `make test`: install into .venv and run the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA := /usr/share/datasets/fashion-mnist

.PHONY: install data demo test clean

$(VENV)/.installed: pyproject.toml
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
