# Set-up and the main jobs. Each target installs what it needs into .venv.
PYTHON ?= python3
VENV := .venv
BENCH_VENV := .venv-bench
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test lint docs notebooks bench bench-retrieval bench-input bench-fashion-mnist compare clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PIP) install --quiet -e '.[train]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -e '.[dev]'
	touch $@

# The main job: SimCLR on bundled MNIST-1D (configs/default.py), from scratch each time.
DEMO_WORKDIR ?= workdirs/demo

demo: $(VENV)/.installed
	rm -rf $(DEMO_WORKDIR)
	$(PY) -m jaxmetric.main --config=configs/default.py --workdir=$(DEMO_WORKDIR)

# Two workers: CI has two cores and most of the suite's time is XLA compiling. The tests
# marked `torch` (parity with PyTorch / pytorch-metric-learning) run in the benchmark venv,
# which has torch + PML beside .[dev]; the main run deselects them (docs/testing.md).
test: $(VENV)/.installed-dev $(BENCH_VENV)/.installed
	$(PY) -m pytest -n 2 -m "not torch"
	$(BENCH_VENV)/bin/python -m pytest -m torch

# Every Python file and notebook of the repository, and the Python blocks of the Markdown
# files (ruff skips .venv and what .gitignore lists, .venv-bench and workdirs/ included).
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site: docs/*.md and the API reference generated from the docstrings
# (docs/api/, mkdocstrings), offline and --strict, into site/ (open site/index.html).
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The Colab notebooks: each colab/<name>.ipynb is generated, without outputs, from its
# jupytext source colab/<name>.py (edit the .py; tests/test_notebooks.py checks they agree).
NOTEBOOKS := quickstart simclr_tpu metric_learning_retrieval

notebooks: $(VENV)/.installed-dev
	$(VENV)/bin/jupytext --update --to notebook $(NOTEBOOKS:%=colab/%.py)

# Benchmarks, and the tests marked `torch`, run in their own venv: PyTorch (CPU build)
# and pytorch-metric-learning are peers to measure against, never dependencies of the
# package. .[dev] brings pytest and what the test modules import (collected with -m torch).

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet torch==2.13.0 pytorch-metric-learning==2.9.0 \
		faiss-cpu==1.15.1 scikit-learn safetensors
	$(BENCH_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/bench.py
	$(BENCH_VENV)/bin/python benchmarks/report.py
	$(BENCH_VENV)/bin/python benchmarks/retrieval.py
	$(BENCH_VENV)/bin/python benchmarks/kmeans.py

# Retrieval at benchmark scale: retrieval_metrics against PML + faiss, knn against faiss.
bench-retrieval: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/retrieval.py

# The input pipeline against a PyTorch DataLoader (PIL) on the same ArrayRecord JPEGs, the
# time to open a split, the trainer's images/s against the pipeline's: JSON + Markdown
# tables. Writes its datasets once into workdirs/bench-input-data (about 2.3 GB).
bench-input: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/input_pipeline.py

# Fashion-MNIST, the same CNN, loss, sampler and steps in jaxmetric's trainer and in PyTorch +
# PML (2 losses x 3 seeds, interleaved): MAP@R / P@1 / R-precision, time per step and to the
# first step. The data: Debian's IDX files (apt-get install dataset-fashion-mnist), written
# once as a TFDS ArrayRecord dataset in $(TFDS_DIR) if it is not there.
FASHION_MNIST_IDX ?= /usr/share/datasets/fashion-mnist
TFDS_DIR ?= workdirs/tfds

bench-fashion-mnist: $(BENCH_VENV)/.installed
	test -d $(TFDS_DIR)/fashion_mnist_idx || $(BENCH_VENV)/bin/python -m jaxmetric.data.prepare \
		fashion_mnist --idx_dir=$(FASHION_MNIST_IDX) --data_dir=$(TFDS_DIR)
	$(BENCH_VENV)/bin/python benchmarks/fashion_mnist_vs_pml.py --data_dir=$(TFDS_DIR) \
		--idx_dir=$(FASHION_MNIST_IDX)

# Every SSL method on MNIST-1D with its recipe: kNN + linear probe, JSON + Markdown table.
compare: $(VENV)/.installed
	$(PY) benchmarks/compare.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) build site *.egg-info .pytest_cache
