# microclip — the front door. Every README command is a target here; CI runs `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help install test test-slow sync-check export clean-nbs demo pretrain microworld study report bench docs

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

pretrain: $(VENV_STAMP)  ## pretrain the tiny CLIP (≈25 min on 2 cores) and publish it to data/pretrained/microclip-tiny
	.venv/bin/microclip pretrain

demo: $(VENV_STAMP)  ## the microworld study end to end (cached steps are skipped) → reports/microworld
	.venv/bin/microclip demo
