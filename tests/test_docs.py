"""The documentation: docs/config.md is what the schema renders (`make docs`), the README stays
short, every relative link and image in README.md and docs/*.md resolves (file and heading), and
every key of the schema is in the config reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hrtem_wf.config import load_schema
from hrtem_wf.config_reference import markdown

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _prose(path: Path) -> str:
    """The file without its fenced code blocks (shell comments there are not headings)."""
    return FENCE.sub("", path.read_text())


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", _prose(path), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_config_reference_is_generated_from_the_schema():
    rendered = markdown(load_schema())
    assert (ROOT / "docs" / "config.md").read_text() == rendered, "run `make docs`"


def test_config_reference_is_deterministic():
    assert markdown(load_schema()) == markdown(load_schema())


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_readme_names_the_test_command():
    assert "make test" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(INLINE_CODE.sub("", _prose(doc))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.is_file():
            broken.append(f"{target} (no file {path.relative_to(ROOT)})")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target} (no heading #{anchor} in {path.relative_to(ROOT)})")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


def _paths(node: dict, prefix: str = ""):
    """Every key of a schema node as a dotted path: nested objects, oneOf / anyOf branches, and
    the values of mappings of names (`<name>`)."""
    for branch in [node, *node.get("oneOf", []), *node.get("anyOf", [])]:
        for name, child in branch.get("properties", {}).items():
            yield f"{prefix}{name}"
            yield from _paths(child, f"{prefix}{name}.")
    values = node.get("additionalProperties")
    if isinstance(values, dict):
        yield from _paths(values, f"{prefix}<name>.")


def test_every_schema_key_is_in_the_config_reference():
    schema = load_schema()
    text = (ROOT / "docs" / "config.md").read_text()
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, re.S | re.M))
    missing = []
    for section, node in schema["properties"].items():
        block = node.get("additionalProperties")
        if isinstance(block, dict):  # a named block: its keys in its own section
            body = next((b for h, b in sections.items() if h.startswith(f"`{section}.<")), "")
            missing += [f"{section}.{p}" for p in _paths(block) if f"| `{p}` |" not in body]
        elif f"| `{section}` |" not in sections.get("Top level", ""):
            missing.append(section)
    distributions = sections.get("Distributions", "")
    missing += [p for p in _paths(schema["$defs"]["distribution"]) if f"`{p}`" not in distributions]
    assert not missing, f"keys missing from docs/config.md (run `make docs`): {missing}"


def test_readme_table_of_the_other_tasks_is_generated_from_tasks_json():
    import json

    from hrtem_wf.results_tables import render

    readme = (ROOT / "README.md").read_text()
    rows_path = ROOT / "docs" / "results" / "tasks.json"
    rows = json.loads(rows_path.read_text()) if rows_path.exists() else []
    for row in rows:
        assert set(row) == {"task", "metric", "value", "seeds", "date", "commit", "command"}
    assert render(readme, rows) == readme, "run `make docs`"


def test_readme_table_of_real_micrographs_is_generated_from_real_json():
    import json

    from hrtem_wf.results_tables import render

    readme = (ROOT / "README.md").read_text()
    rows = json.loads((ROOT / "docs" / "results" / "real.json").read_text())
    keys = {"config", "real_set", "metric", "value", "seeds", "date", "commit", "command"}
    assert rows and all(set(row) == keys for row in rows)
    assert render(readme, rows, "real.json") == readme, "run `make docs`"


def test_the_real_table_shows_each_config_s_newest_figures_with_their_stamps():
    from hrtem_wf.results_tables import markers, render

    stamp = {"real_set": "real", "command": "make demo", "commit": "abc1234"}
    rows = [
        {"config": "hand", "metric": "f1", "value": 0.9, "seeds": [0, 1], "date": "2026-12-02"},
        {"config": "hand", "metric": "f1", "value": 0.952, "seeds": [0, 1], "date": "2026-12-03"},
        {"config": "hand", "metric": "count_error", "value": -0.031, "seeds": [0],
         "date": "2026-12-07"},
    ]  # fmt: skip
    begin, end = markers("real.json")
    text = render(f"{begin}\n{end}\n", [r | stamp for r in rows], "real.json")
    (line,) = [t for t in text.splitlines() if t.startswith("| hand")]
    assert "F1 0.952" in line and "0.900" not in line
    assert "count -3.1% (seeds [0], 2026-12-07, abc1234)" in line
    assert line.endswith("| [0, 1], 2026-12-03, abc1234 |")


def test_the_tasks_table_shows_the_newest_figure_of_each_metric():
    from hrtem_wf.results_tables import BEGIN, END, render

    stamp = {"seeds": [0, 1], "commit": "abc1234", "command": "python benchmarks/other_tasks.py"}
    rows = [
        {"task": "madsen_columns", "metric": "f1", "value": 0.151, "date": "2026-12-02"},
        {"task": "madsen_columns", "metric": "f1", "value": 0.5, "date": "2026-12-07"},
        {
            "task": "madsen_columns",
            "metric": "training_images_seen",
            "value": 768,
            "date": "2026-12-07",
        },
    ]
    text = render(f"before\n{BEGIN}\nold\n{END}\nafter\n", [r | stamp for r in rows])
    assert text.startswith("before\n") and text.endswith(f"{END}\nafter\n") and "old" not in text
    (line,) = [t for t in text.splitlines() if t.startswith("| Au column detection")]
    assert "f1 0.5 (seeds [0, 1])" in line and "768 images seen" in line and "0.151" not in line
    assert "| MoS2 exit wave" in text and "not measured yet" in text
