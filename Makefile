# Two commands do everything on a fresh machine with Python >= 3.11 and pip:
#   make figures   regenerate figures/ with the default profile (sets up .venv first)
#   make test      lint (ruff) and run the test suite (sets up .venv first)
#   make lab       open JupyterLab on notebooks/ with the suite's kernel
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= default
# The CPU build of torch unless a GPU is visible: a plain `torch` requirement pulls a multi-GB CUDA build.
# Where PyTorch's CPU wheel index cannot be reached, pip falls back to the other configured indexes.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,--extra-index-url https://download.pytorch.org/whl/cpu)

.PHONY: setup figures test lab bench clean-cache

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --retries 1 --timeout 20 "torch==$(TORCH_VERSION)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name ttc-utils --display-name "Python 3 (ttc_utils)"
	$(BIN)/nbstripout --install --attributes .gitattributes 2>/dev/null || true
	touch $@

figures: setup
	$(BIN)/python -m ttc_utils.run --profile $(PROFILE)

test: setup
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 TQDM_DISABLE=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q

lab: setup
	$(BIN)/jupyter lab notebooks/

bench: setup
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/search.py

clean-cache:
	rm -rf data/cache notebooks/executed
