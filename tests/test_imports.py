"""A job imports what its stage needs and no more (README: "Speed on the CPU"): thousands of
structure and image jobs each pay their imports (benchmarks/jobs.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("scipy.stats", "matplotlib", "torch", "abtem", "czone", "czone.viz", "pandas", "dask")


def imported(statement: str) -> set[str]:
    """Which of HEAVY a fresh interpreter holds after `statement`."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("statement", "allowed"),
    [
        ("import hrtem_wf.cli", set()),  # every job, `hrtem-wf --help` too
        ("import hrtem_wf.structures", {"czone"}),  # czone without its plots (matplotlib)
        ("import hrtem_wf.images", set()),
        # what `hrtem-wf structures` and `hrtem-wf images` call: the stages' entries
        ("import hrtem_wf.structures.stage", {"czone"}),
        ("import hrtem_wf.images.stage", set()),
    ],
)
def test_a_stage_imports_only_what_it_needs(statement, allowed):
    assert imported(statement) == allowed


def test_czone_plots_still_import_after_the_structures_stage():
    assert "czone.viz" in imported("import hrtem_wf.structures\nimport czone.viz")


def test_a_truncated_normal_still_draws_with_scipy_imported_on_use():
    statement = (
        "import numpy as np\nfrom hrtem_wf.sampling import sample\n"
        "spec = {'distribution': 'normal', 'mean': 40, 'sd': 10, 'min': 30, 'max': 50}\n"
        "assert 30 <= sample(spec, np.random.default_rng(0)) <= 50"
    )
    assert "scipy.stats" in imported(statement)
