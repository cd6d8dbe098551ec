# make demo: the whole chain on config/config.yaml (creates .venv on first use).
# make test: the test suite; make test-fast: without the Snakemake and SLURM tests (the edit loop).
# make format: ruff + snakefmt rewrite the code; make lint / make dry-run: look before you run.
# make unlock: after a run was killed hard (README: "After a kill"; docs/usage.md).
VENV ?= .venv
CORES ?= all
PYTHON ?= python3
SNAKEMAKE = $(VENV)/bin/snakemake --profile profiles/local --cores $(CORES)
# Rules shell out to the `hrtem-wf` command installed in the venv.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test test-fast format lint dry-run unlock check-lock clean plan bench-dag \
  recipes-smoke slurm-up slurm-down gpu-check-prepare gpu-check docs

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# pip < 24.1: czone 2022.9.20's metadata is rejected by newer pip.
	$(VENV)/bin/python -m pip install --quiet "pip==23.2.1"
	$(VENV)/bin/python -m pip install --quiet -e ".[all,test]"
	touch $@

install: $(VENV)/.installed

demo: check-lock install
	$(SNAKEMAKE)
	@echo "Report: $(CURDIR)/results/report/summary.md (figures beside it)"

test: install
	$(VENV)/bin/python -m pytest

# The tests without `workflow` (Snakemake runs) and `slurm` marks: seconds, not minutes.
test-fast: install
	$(VENV)/bin/python -m pytest -m "not workflow and not slurm"

SNAKEFILES = Snakefile workflow/rules

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/snakefmt $(SNAKEFILES)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakefmt --check $(SNAKEFILES)
	$(VENV)/bin/snakemake --lint

dry-run: install
	$(SNAKEMAKE) --dry-run

clean:
	rm -rf results .snakemake

plan: install
	$(VENV)/bin/hrtem-wf plan --rulegraph results/plan/rulegraph.png

bench-dag: install
	$(VENV)/bin/python benchmarks/dag.py

# GPU check (docs/performance.md: "GPU check"): prepare here, with the network (the CPU reference
# and the wheels a bare GPU machine lacks, into .gpu_check/); run on a machine with one NVIDIA GPU.
# GPU_PYTHON: a Python with the packages (default: the venv's; python3 on a carried install).
GPU_PYTHON ?= $(VENV)/bin/python
gpu-check-prepare: install
	$(VENV)/bin/python benchmarks/gpu_check.py prepare

gpu-check:
	test -f .gpu_check/reference/history.json || $(GPU_PYTHON) benchmarks/gpu_check.py prepare --no-wheels
	$(GPU_PYTHON) benchmarks/gpu_check.py run --device gpu --out results/gpu_check

# Every recipe end to end at smoke size (docs/usage.md: "The study's datasets, by name").
SMOKE = --replace-workflow-config --config device=cpu smoke=True
SMOKE_STUDY = --configfile config/recipes/study.yaml $(SMOKE) --directory results/smoke/study
SMOKE_OTHER = --configfile config/recipes/other_families.yaml $(SMOKE) \
  --directory results/smoke/other_families

recipes-smoke: LOCK_DIRS = results/smoke/study results/smoke/other_families
recipes-smoke: check-lock install
	$(SNAKEMAKE) $(SMOKE_STUDY)
	$(SNAKEMAKE) $(SMOKE_OTHER)

# After a kill. A run killed hard (kill -9, out of memory, a closed terminal or allocation) leaves
# its lock in <dir>/.snakemake/locks, and the next run stops with Snakemake's "Directory cannot be
# locked". check-lock says what happened instead, where no snakemake process works in <dir>
# (found through /proc: Linux; elsewhere Snakemake's own message stands). A stale lock's files
# are empty markers: `snakemake --unlock` (make unlock) removes them and nothing else.
LOCK_DIRS = .
locked = ls -A "$(1)/.snakemake/locks" 2>/dev/null | grep -q .
check-lock:
	@for lock_dir in $(LOCK_DIRS); do \
	  dir=$$(cd "$$lock_dir" 2>/dev/null && pwd -P) || continue; \
	  $(call locked,$$dir) && [ -d /proc/self ] || continue; \
	  running=; \
	  for proc in /proc/[0-9]*; do \
	    [ "$$(readlink "$$proc/cwd" 2>/dev/null)" = "$$dir" ] || continue; \
	    set -f; set -- $$(tr '\0' ' ' < "$$proc/cmdline" 2>/dev/null); set +f; \
	    case "$${1##*/} $${2##*/} $${3:-}" in \
	      "snakemake "*|*" snakemake "*|*" -m snakemake") running=1; break;; \
	    esac; \
	  done; \
	  [ -z "$$running" ] || continue; \
	  echo "A Snakemake lock is left in $$dir/.snakemake/locks and no snakemake runs there:" >&2; \
	  echo "a previous run was killed (kill -9, out of memory, a closed session) before it" >&2; \
	  echo "could remove its lock. Run 'make unlock', then run this again: jobs the killed run" >&2; \
	  echo "left unfinished are rerun from the start (--rerun-incomplete), finished ones kept." >&2; \
	  exit 1; \
	done

unlock: install
	$(SNAKEMAKE) --unlock
	@if $(call locked,results/smoke/study); then $(SNAKEMAKE) $(SMOKE_STUDY) --unlock; fi
	@if $(call locked,results/smoke/other_families); then $(SNAKEMAKE) $(SMOKE_OTHER) --unlock; fi

# A single-node SLURM on this machine for tests/test_slurm.py (root; installs slurm-wlm + munge).
slurm-up:
	bash tests/slurm/slurm-up.sh

slurm-down:
	bash tests/slurm/slurm-down.sh

# The config reference, docs/config.md, generated from the schema, and the README's tables of
# docs/results/tasks.json and real.json (tests/test_docs.py checks them).
docs: install
	$(VENV)/bin/python -m hrtem_wf.config_reference docs/config.md
	$(VENV)/bin/python -m hrtem_wf.results_tables README.md docs/results/tasks.json \
	  docs/results/real.json
