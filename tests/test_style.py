"""Style: ruff (lint and format) and snakefmt find nothing in the repository. `make format`
fixes what they can; the rest `make lint` lists, to fix by hand. In make test and test-fast."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import BIN, ROOT

pytestmark = pytest.mark.style

SNAKEFILES = ("Snakefile", "workflow/rules")


def tool(name: str, *args: str) -> subprocess.CompletedProcess:
    if not (BIN / name).exists():
        pytest.skip(f"{name} is not installed: pip install -e '.[test]' (make install)")
    return subprocess.run([str(BIN / name), *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check_is_clean():
    result = tool("ruff", "check", "--output-format", "concise", ".")
    findings = [line for line in result.stdout.splitlines() if re.match(r"\S+:\d+:\d+: ", line)]
    files = sorted({line.split(":", 1)[0] for line in findings})
    if result.returncode != 0:
        pytest.fail(
            f"ruff check: {len(findings)} findings in {len(files)} files "
            f"({', '.join(files)}); `make format` fixes those marked [*]:\n"
            + "\n".join(findings)
            + result.stderr,
            pytrace=False,
        )


def test_ruff_format_is_clean():
    result = tool("ruff", "format", "--check", "--output-format", "concise", ".")
    files = sorted(set(re.findall(r"^(\S+):\d+:\d+: unformatted", result.stdout, re.M)))
    if result.returncode != 0:
        pytest.fail(
            f"ruff format would change {len(files)} files (run `make format`):\n"
            + "\n".join(files)
            + result.stderr,
            pytrace=False,
        )


def test_snakefmt_is_clean():
    result = tool("snakefmt", "--check", "--verbose", *SNAKEFILES)
    files = sorted(
        re.findall(
            r'In file "([^"]+)":\s+Formatted content is different', result.stderr + result.stdout
        )
    )
    if result.returncode != 0:
        pytest.fail(
            f"snakefmt would change {len(files)} files (run `make format`):\n"
            + "\n".join(files or [result.stderr]),
            pytrace=False,
        )
