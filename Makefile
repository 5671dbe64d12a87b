# Two entry points on a fresh machine: `make test` and `make demo`.
# Both create .venv, install the pinned requirements, the package itself
# (editable) and the Debian Fashion-MNIST files once, then run. Nothing is
# fetched at run time.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Debian's dataset-fashion-mnist puts the four IDX .gz files here; elsewhere,
# download them into any folder and pass FASHION_MNIST_DIR=that/folder (README).
DEBIAN_FASHION_MNIST := /usr/share/datasets/fashion-mnist
FASHION_MNIST_DIR ?= $(DEBIAN_FASHION_MNIST)
FASHION_MNIST := $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz
# The demo config reads Debian's folder; another one is passed as its manual_dir.
DEMO_DATA := $(if $(filter $(DEBIAN_FASHION_MNIST),$(FASHION_MNIST_DIR)),,--config.dataset.manual_dir=$(FASHION_MNIST_DIR))
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_WORKDIR ?= workdirs/demo
DEMO_ARGS ?=

.PHONY: setup test demo lint aot-setup clean

setup: $(VENV)/.installed $(FASHION_MNIST)

# requirements.txt is the whole lock (the direct dependencies of
# pyproject.toml and everything they need), so the package installs --no-deps.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# The export extra (torch, timm: ~4.6 GB without triton), for tests/test_export.py only.
$(VENV)/.installed-export: $(VENV)/.installed requirements-export.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-export.txt -c requirements.txt
	touch $@

# The GPU and TPU compilers of `python -m symmim_jax.aot` (~2.4 GB), in a folder
# that only that command puts on its path: other runs never see the plugins.
$(VENV)/.installed-aot: $(VENV)/.installed requirements-aot.txt
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/aot_plugins -r requirements-aot.txt
	touch $@

$(FASHION_MNIST):
	$(SUDO) apt-get install -y dataset-fashion-mnist || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y dataset-fashion-mnist)

test: setup $(VENV)/.installed-export $(VENV)/.installed-aot
	$(PY) -m pytest -q -n 2 -m 'slow or not slow' tests

aot-setup: setup $(VENV)/.installed-aot

lint: setup
	$(VENV)/bin/ruff check symmim_jax tests experiments
	$(VENV)/bin/ruff format --check symmim_jax tests experiments

demo: setup
	$(PY) -m symmim_jax.pretrain --config=symmim_jax/configs/demo.py --workdir=$(DEMO_WORKDIR) \
	  $(DEMO_DATA) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) workdirs
