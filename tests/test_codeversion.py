"""Code versions are derived from imports: a stage's version changes exactly when code it runs
(its entry, the hrtem_wf modules it imports transitively) or a library it imports changes."""

from __future__ import annotations

import shutil
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import hrtem_wf.codeversion as codeversion
from hrtem_wf.codeversion import PACKAGE, code_version, source_closure

ROOT = Path(__file__).resolve().parents[1]

# The entries the rules run (workflow/rules/*.smk): each stage's entry in its package.
STAGES = {
    "structures": "hrtem_wf.structures.stage:run",
    "simulations": "hrtem_wf.simulations.stage:run",
    "images": "hrtem_wf.images.stage:run",
    "datasets": "hrtem_wf.datasets.stage:run",
    "models": "hrtem_wf.models.stage:run",
    "evaluations": "hrtem_wf.evaluations.stage:evaluate",
    "scores": "hrtem_wf.evaluations.stage:score",
    "report": "hrtem_wf.evaluations.stage:report",
}


def versions(package: Path) -> dict[str, str]:
    code_version.cache_clear()
    return {stage: code_version(entry, package) for stage, entry in STAGES.items()}


def importers(module: str, package: Path = PACKAGE) -> set[str]:
    """The stages whose closure holds `module`, by our own import walk."""
    return {stage for stage, entry in STAGES.items() if module in source_closure(entry, package)[0]}


@pytest.fixture
def package(tmp_path) -> Path:
    """A copy of the hrtem_wf sources to edit."""
    copy = tmp_path / "hrtem_wf"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def test_every_rule_uses_a_derived_version():
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    for stage, entry in STAGES.items():
        assert f'code_version("{entry}")' in rules, stage
    assert 'code_version("hrtem_wf.evaluations.stage:realism_gaps")' in rules
    assert "STAGE_SOURCES" not in (PACKAGE / "codeversion.py").read_text()
    # the datasets rule runs a script (its input list outruns a command line): a call of its entry
    script = (ROOT / "workflow" / "scripts" / "datasets.py").read_text()
    assert "from hrtem_wf.datasets.stage import" in script and len(script.splitlines()) <= 6


def test_closure_follows_imports_through_other_modules():
    # inference.py is imported by no stage entry directly: score reaches it through
    # real.sets; the image kernels through images/__init__ -> formation
    assert "hrtem_wf.real.inference" in source_closure(STAGES["scores"])[0]
    assert "hrtem_wf.images.kernels" in source_closure(STAGES["images"])[0]
    assert "hrtem_wf.real.micrographs" in source_closure(STAGES["scores"])[0]
    # training draws images on the fly with the images stage's own code
    assert "hrtem_wf.images.formation" in source_closure(STAGES["models"])[0]
    # and no stage drags in what it does not import
    assert "hrtem_wf.structures.scene" not in source_closure(STAGES["models"])[0]
    assert "hrtem_wf.structures.scene" not in source_closure(STAGES["simulations"])[0]


def test_editing_an_indirectly_imported_module_changes_exactly_its_importers(package):
    before = versions(package)
    # images/kernels.py is imported only by images/formation.py, which the images stage and
    # training (images drawn on the fly, reached through hrtem_wf.models) import: all downstream
    kernels = package / "images" / "kernels.py"
    expected = importers("hrtem_wf.images.kernels", package)
    assert expected == {"images", "models", "evaluations", "scores", "report"}
    kernels.write_text(kernels.read_text() + "\nGAIN = 1.0\n")
    after = versions(package)
    assert {s for s in STAGES if after[s] != before[s]} == expected


def test_score_changes_when_inference_changes(package):
    before = versions(package)
    inference = package / "real" / "inference.py"
    inference.write_text(inference.read_text() + "\nTILE_MARGIN = 3\n")
    after = versions(package)
    changed = {s for s in STAGES if after[s] != before[s]}
    assert "scores" in changed
    assert changed == importers("hrtem_wf.real.inference", package)
    assert not changed & {"structures", "simulations", "images", "datasets"}


def test_comments_and_docstrings_change_nothing(package):
    before = versions(package)
    for path in (
        package / "images" / "formation.py",
        package / "real" / "inference.py",
        package / "images" / "stage.py",
        package / "evaluations" / "stage.py",
        package / "structures" / "scene.py",
    ):
        source = path.read_text()
        path.write_text(source.replace('"""', '"""Edited docstring. ', 1) + "\n# a comment\n")
    assert versions(package) == before


def test_editing_code_no_rule_runs_changes_no_stage(package):
    before = versions(package)
    # the command line only parses and dispatches; predict is run by no rule; codeversion only
    # records which code made an output
    for path, line in (
        (package / "codeversion.py", "def _dump(node: ast.AST) -> str:"),
        (package / "cli" / "predict.py", "def predict(*, threshold: float, **options) -> None:"),
        (package / "cli" / "__init__.py", "def main(argv: list[str] | None = None) -> int:"),
        (package / "real" / "predict.py", "    from tqdm import tqdm\n"),
    ):
        source = path.read_text()
        assert line in source
        path.write_text(source.replace(line, line + "\n    _ = 1\n", 1))
    assert versions(package) == before


def test_editing_one_evaluations_rule_changes_only_its_version(package):
    """The evaluations stage's rules share a module: each version follows its own function."""
    before = versions(package)
    stage = package / "evaluations" / "stage.py"
    source = stage.read_text()
    line = "    start = time.perf_counter()\n"
    assert source.count(line) == 1
    stage.write_text(source.replace(line, line + "    _ = 1\n"))
    after = versions(package)
    assert {s for s in STAGES if after[s] != before[s]} == {"scores"}


def test_a_library_version_bump_changes_the_stages_that_import_it(monkeypatch):
    before = versions(PACKAGE)
    real = codeversion.version
    monkeypatch.setattr(
        codeversion, "version", lambda name: "99.0" if name == "czone" else real(name)
    )
    after = versions(PACKAGE)
    assert {s for s in STAGES if after[s] != before[s]} == {"structures"}

    monkeypatch.setattr(
        codeversion, "version", lambda name: "99.0" if name == "torch" else real(name)
    )
    after = versions(PACKAGE)
    assert {s for s in STAGES if after[s] != before[s]} == {
        "models",
        "evaluations",
        "scores",
        "report",
    }
    code_version.cache_clear()


def test_provenance_is_the_code_version_and_the_libraries_it_imports():
    record = codeversion.provenance(STAGES["simulations"])
    assert set(record) == {"code_version", "libraries"}
    assert record["code_version"] == code_version(STAGES["simulations"])
    assert record["libraries"] == codeversion.library_versions(
        source_closure(STAGES["simulations"])[1]
    )
    assert {"abTEM", "ase", "numpy", "zarr"} <= set(record["libraries"])
    assert "torch" not in record["libraries"]  # nothing the stage does not import
    record["libraries"].clear()  # a copy: the cached record stays whole
    assert codeversion.provenance(STAGES["simulations"])["libraries"]


def test_distributions_are_those_importlib_metadata_finds():
    assert codeversion._distributions() == packages_distributions()


def test_libraries_are_recorded_by_distribution_name():
    _, third_party = source_closure(STAGES["models"])
    found = codeversion.library_versions(third_party)
    assert {"torch", "numpy", "zarr"} <= set(found)
    assert any(name.replace("-", "_") == "segmentation_models_pytorch" for name in found)
    _, third_party = source_closure(STAGES["simulations"])
    assert "abTEM" in codeversion.library_versions(third_party)


def test_unknown_entry_is_an_error():
    with pytest.raises(KeyError, match="no_such"):
        code_version("hrtem_wf.no_such")
    with pytest.raises(KeyError, match="_no_such"):
        code_version("hrtem_wf.images.stage:_no_such")
