"""The config reference, docs/config.md, rendered from the config schema (its one home).

`python -m hrtem_wf.config_reference docs/config.md` (or `make docs`) writes it, and
tests/test_docs.py checks the file against `markdown(load_schema())`. One section per top-level
block, one table row per key (dotted paths for nested mappings), the distributions last.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hrtem_wf.config import load_schema

#: The wildcard letter of each named block, as in the README's stage diagram.
LETTERS = dict(structures="S", simulations="M", images="I", datasets="D", models="N", real_sets="R")
REFS = {
    "distribution": "number or [distribution](#distributions)",
    "positive": "number > 0",
    "device": "`cpu`, `gpu`",
}
MAX_ENUM = 16  # a longer enum (the smp encoders) shows its first values and a count
HEADER = ["| key | type / allowed values | default | description |", "|---|---|---|---|"]
INTRO = """# Config reference

<!-- Generated from src/hrtem_wf/config.schema.yaml by `make docs`; do not edit by hand. -->

{description}

A key marked *required* has no default (a nested one: when its parent is given); the others
are filled with their default when the config is validated (the schema's `default:`). How the
blocks chain, the checks beyond the schema and how to plan a run: [usage.md](usage.md).

## Top level

Required: {required}.
"""


def _value(value) -> str:
    """A default or an allowed value as YAML spells it, in backticks."""
    return f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def kind(node: dict) -> str:
    """What a schema node accepts, in one short phrase."""
    ref = node.get("$ref", "").rsplit("/", 1)[-1]
    if ref in REFS:
        return REFS[ref]
    if "const" in node:
        return _value(node["const"])
    if "enum" in node:
        values = [_value(v) for v in node["enum"]]
        if len(values) > MAX_ENUM:
            return f"{', '.join(values[:6])}, ... ({len(values)} in all)"
        return ", ".join(values)
    for branches in ("oneOf", "anyOf"):
        if branches in node:
            return " or ".join(kind(branch) for branch in node[branches])
    if "pattern" in node and "type" not in node:
        return f"matching `{node['pattern']}`"
    types = node.get("type", [])
    return " or ".join(_type(t, node) for t in ([types] if isinstance(types, str) else types))


def _type(name: str, node: dict) -> str:
    if name == "null":
        return "`null`"
    if name == "array":
        low, high = node.get("minItems"), node.get("maxItems")
        count = f"{low} " if low is not None and low == high else ""
        return f"list of {count}{kind(node['items'])}" if "items" in node else "list"
    if name == "object":
        values = node.get("additionalProperties")
        if not isinstance(values, dict) or "properties" in node:
            return "mapping"
        names = node.get("propertyNames", {})
        names = ", ".join(map(_value, names["enum"])) if "enum" in names else "names"
        return f"mapping of {names} to {kind(values)}"
    word = name + _bounds(node)
    return f"{word} matching `{node['pattern']}`" if "pattern" in node else word


def _bounds(node: dict) -> str:
    """A number's bounds: ` >= 0`, ` < 1`, ` in (0, 1]` (interval notation when both are given)."""
    low = "[" if "minimum" in node else "(" if "exclusiveMinimum" in node else ""
    high = "]" if "maximum" in node else ")" if "exclusiveMaximum" in node else ""
    lower = node.get("minimum", node.get("exclusiveMinimum"))
    upper = node.get("maximum", node.get("exclusiveMaximum"))
    if low and high:
        return f" in {low}{lower}, {upper}{high}"
    if low:
        return f" {'>=' if low == '[' else '>'} {lower}"
    return f" {'<=' if high == ']' else '<'} {upper}" if high else ""


def rows(properties: dict, required: list, prefix: str = "") -> list[str]:
    """One table row per key, each followed by the rows of the keys nested in it."""
    lines = []
    for name, node in properties.items():
        default = _value(node["default"]) if "default" in node else ""
        default = default or ("*required*" if name in required else "")
        description = _cell(node.get("description", ""))
        lines.append(f"| `{prefix}{name}` | {_cell(kind(node))} | {default} | {description} |")
        for path, branch in _nested(node, f"{prefix}{name}."):
            lines += rows(branch["properties"], branch.get("required", []), path)
    return lines


def _nested(node: dict, path: str):
    """The objects with keys inside a node: itself, its oneOf / anyOf branches, and the values
    of a mapping of names (`select.where.<name>.min`)."""
    for branch in [node, *node.get("oneOf", []), *node.get("anyOf", [])]:
        if "properties" in branch:
            yield path, branch
    values = node.get("additionalProperties")
    if isinstance(values, dict):
        yield from _nested(values, f"{path}<name>.")


def _conditions(block: dict) -> list[str]:
    """A block's if/then/else as a sentence (one const condition: a family, a format)."""
    if "if" not in block:
        return []
    ((key, condition),) = block["if"]["properties"].items()
    then, other = (", ".join(map("`{}`".format, block[b]["required"])) for b in ("then", "else"))
    return [f"With `{key}: {condition['const']}` also required: {then}; otherwise {other}.", ""]


def _distributions(schema: dict) -> list[str]:
    node = schema["$defs"]["distribution"]
    lines = ["## Distributions", "", f"Any key typed *distribution* takes {node['description']}:"]
    lines += ["", "| `distribution` | required keys | optional keys |", "|---|---|---|"]
    for branch in node["oneOf"]:
        if "properties" not in branch:
            lines.append(f"| (a plain {branch['type']}: fixed) | | |")
            continue
        keys = {k: v for k, v in branch["properties"].items() if k != "distribution"}
        spelled = {k: f"`{k}` ({_cell(kind(v))})" for k, v in keys.items()}
        required = ", ".join(spelled[k] for k in keys if k in branch["required"])
        optional = ", ".join(spelled[k] for k in keys if k not in branch["required"])
        lines.append(f"| {kind(branch['properties']['distribution'])} | {required} | {optional} |")
    return lines


def markdown(schema: dict) -> str:
    """docs/config.md: the schema's keys, types, defaults and descriptions, block by block."""
    top = schema["properties"]
    blocks = [name for name in top if isinstance(top[name].get("additionalProperties"), dict)]
    scalars = {name: node for name, node in top.items() if name not in blocks}
    required = ", ".join(map("`{}`".format, schema["required"]))
    lines = [INTRO.format(description=schema["description"], required=required), *HEADER]
    lines += rows(scalars, schema["required"])
    for pattern, node in schema.get("patternProperties", {}).items():
        lines.append(f"| any key matching `{pattern}` | any | | {_cell(node['description'])} |")
    for name in blocks:
        block = top[name]["additionalProperties"]
        lines += ["", f"## `{name}.<{LETTERS.get(name, 'name')}>`", ""]
        if name not in schema["required"]:
            default = _value(top[name].get("default", {}))
            text = _cell(top[name].get("description", ""))
            lines += [f"Optional (default {default}). {text[:1].upper()}{text[1:]}.", ""]
        lines += [*_conditions(block), *HEADER, *rows(block["properties"], block["required"])]
    return "\n".join([*lines, "", *_distributions(schema)]) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write the reference to the path given (default docs/config.md)."""
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "docs/config.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(load_schema()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
