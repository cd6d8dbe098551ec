"""hrtem_wf.memory: with huge pages asked for, a large CPU tensor is faulted in 2 MiB at a time,
not 4 KiB (PyTorch's THP_MEM_ALLOC_ENABLE, read at its first allocation)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ALLOCATE = """
import os, resource, sys
os.environ.pop("THP_MEM_ALLOC_ENABLE", None)
import torch
from hrtem_wf.memory import huge_pages_for_tensors
if sys.argv[1] == "huge":
    huge_pages_for_tensors()  # after the import, before the first tensor: as the jobs do
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(2**24)  # 64 MiB, allocated, written and freed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", ALLOCATE, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


@pytest.mark.skipif(
    not THP.exists() or "[madvise]" not in THP.read_text(),
    reason="transparent huge pages not in madvise mode (the common one; this machine's)",
)
def test_large_tensors_fault_in_huge_pages():
    pages = 10 * 2**26 // 4096  # ten 64 MiB tensors in 4 KiB pages: 163840
    assert faults("default") > 0.9 * pages
    assert faults("huge") < 0.1 * pages  # 2 MiB pages: 512x fewer, plus the small ones
