# make demo: the whole chain on config/config.yaml (creates .venv on first use).
# make test: the test suite.   make lint / make dry-run: look before you run.
VENV ?= .venv
CORES ?= all
PYTHON ?= python3
SNAKEMAKE = $(VENV)/bin/snakemake --profile profiles/local --cores $(CORES)
# Rules shell out to the `hrtem-wf` command installed in the venv.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test lint dry-run clean plan bench-dag recipes-smoke slurm-up slurm-down

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# pip < 24.1: czone 2022.9.20's metadata is rejected by newer pip.
	$(VENV)/bin/python -m pip install --quiet "pip==23.2.1"
	$(VENV)/bin/python -m pip install --quiet -e ".[all,test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(SNAKEMAKE)
	@echo "Report: $(CURDIR)/results/report/summary.md (figures beside it)"

test: install
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/snakemake --lint

dry-run: install
	$(SNAKEMAKE) --dry-run

clean:
	rm -rf results .snakemake

plan: install
	$(VENV)/bin/hrtem-wf plan --rulegraph results/plan/rulegraph.png

bench-dag: install
	$(VENV)/bin/python benchmarks/dag.py

# Every recipe end to end at smoke size (README: "The study's datasets, by name").
recipes-smoke: install
	$(SNAKEMAKE) --configfile config/recipes/study.yaml --replace-workflow-config \
	  --config device=cpu smoke=True --directory results/smoke/study
	$(SNAKEMAKE) --configfile config/recipes/other_families.yaml --replace-workflow-config \
	  --config device=cpu smoke=True --directory results/smoke/other_families

# A single-node SLURM on this machine for tests/test_slurm.py (root; installs slurm-wlm + munge).
slurm-up:
	bash tests/slurm/slurm-up.sh

slurm-down:
	bash tests/slurm/slurm-down.sh
