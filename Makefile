# microclip — the front door. Every README command is a target here; CI runs `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help install test test-slow sync-check export clean-nbs demo pretrain verify-pretrain study report bench bench-gpu docs docs-check verify-release

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# The virtual environment: built once from requirements.txt, rebuilt when it or settings.ini change.
$(VENV_STAMP): requirements.txt settings.ini setup.py
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -U pip wheel setuptools
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

install: $(VENV_STAMP)  ## create/update .venv with the pinned environment

export: $(VENV_STAMP)  ## write microclip/ from the notebooks
	.venv/bin/nbdev_export

clean-nbs: $(VENV_STAMP)  ## strip outputs/metadata from notebooks (keeps papermill `parameters` tags)
	.venv/bin/nbdev_clean

sync-check: $(VENV_STAMP)  ## fail if nbdev_export would change microclip/ (notebooks and package out of sync)
	.venv/bin/nbdev_export
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
	  if ! git diff --quiet -- microclip || [ -n "$$(git ls-files --others --exclude-standard microclip)" ]; then \
	    git status --short microclip; echo "microclip/ is out of sync with nbs/: run 'make export' and commit"; exit 1; fi; fi

test: $(VENV_STAMP) sync-check  ## notebooks (nbdev_test) + pytest, offline
	.venv/bin/nbdev_test --n_workers 2
	$(PY) -m pytest -q tests

test-slow: $(VENV_STAMP)  ## also run cells and tests marked slow
	.venv/bin/nbdev_test --n_workers 2 --flags slow
	$(PY) -m pytest -q tests --runslow

pretrain: $(VENV_STAMP)  ## pretrain the tiny CLIP (≈ 15 min on 2 idle cores: 600 updates + diagnosis) and publish it to data/pretrained/microclip-tiny
	.venv/bin/microclip pretrain

verify-pretrain: $(VENV_STAMP)  ## rerun the pretraining recipe from scratch (≈ 15 min) and check it reproduces the published state_sha256
	.venv/bin/microclip pretrain --verify

demo: $(VENV_STAMP)  ## the microworld study end to end (cached steps are skipped) → reports/microworld
	.venv/bin/microclip demo

# The study (nbs/17_study.ipynb, 18_reports, 19_docs). Example: make study DATASETS="flowers dtd" SEEDS="0 1 2" CONFIG=ours_vit_b_32_cupl_proto
DATASETS ?= microworld
SEEDS ?= 0 1 2
EXPERIMENTS ?= zeroshot adapt ablations
# ablation axes of microclip.study.ABLATIONS (default: all), e.g. ABLATIONS=classifier_init for the paper's Table 5
ABLATIONS ?=
# the tiny-CLIP recipe for the microworld alone, the released defaults otherwise
CONFIG ?= $(if $(filter-out microworld,$(DATASETS)),default,microworld)
EXECUTOR ?= local
# local executor: runs at a time, each with its share of the cores as threads (nbs/17_study.ipynb)
PARALLEL ?= 1
SET ?=

study: $(VENV_STAMP)  ## papermill runs into runs/: DATASETS=.. SEEDS=.. [EXPERIMENTS=zeroshot adapt ablations] [ABLATIONS=..] [CONFIG=..] [EXECUTOR=local|slurm] [PARALLEL=n] [SET="k=v .."]
	.venv/bin/microclip study --datasets $(DATASETS) --seeds $(SEEDS) --experiment $(EXPERIMENTS) --train-config $(CONFIG) \
	  --executor $(EXECUTOR) --parallel $(PARALLEL) $(if $(strip $(ABLATIONS)),--ablations $(ABLATIONS),) $(if $(strip $(SET)),--set $(SET),)

report: $(VENV_STAMP)  ## tables, figures and reports/README.md from the finished runs in runs/ (seconds)
	.venv/bin/microclip report

docs: $(VENV_STAMP)  ## docs site from the executed notebooks, README and reports → site/index.html (minutes)
	$(PY) -c "from microclip.docs import build_docs; print(build_docs() / 'index.html')"

docs-check: $(VENV_STAMP)  ## build one page and screenshot it in headless Chromium → site/screenshot.png
	$(PY) -c "from microclip.docs import build_docs, screenshot; s = build_docs(['18_reports']); print(screenshot(s / '18_reports' / 'index.html', s / 'screenshot.png'))"

bench: $(VENV_STAMP)  ## time the training step of a random ViT-B/32 (batch 16, 224 px) and both view paths → reports/bench/<device>.json
	.venv/bin/microclip bench --backbone ViT-B-32 --batch 16

# On a machine with a GPU (≈ 12 min with the environment in place): .ci/gpu-check — the GPU preset (batch 64, bf16,
# torch.compile) for ViT-B/32 and ViT-B/16 with all cores as loader workers, the B/32 step in bf16 and float32 eager beside
# it, and bench.precision_check on the microworld; results in reports/bench/, then commit them.
bench-gpu: $(VENV_STAMP)  ## the GPU checks (.ci/gpu-check) → reports/bench/<gpu>.json, reports/bench/precision/
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'bench-gpu needs a CUDA device')"
	PY=$(PY) bash .ci/gpu-check

# The released training step against ours on identical random weights, views and heads (nbs/22_faithfulness.ipynb).
# RELEASE is a clone of https://github.com/sathiiii/microCLIP; its code is imported at run time, never copied here.
RELEASE ?=
verify-release: $(VENV_STAMP)  ## released step vs ours, side by side (CPU, ~1 min) → reports/faithfulness.md: RELEASE=<clone of sathiiii/microCLIP>
	@if [ -z "$(RELEASE)" ]; then echo "usage: make verify-release RELEASE=<path to a clone of https://github.com/sathiiii/microCLIP>" >&2; exit 2; fi
	$(PY) -c "import sys; from microclip.faithfulness import main; main(sys.argv[1])" "$(RELEASE)"
