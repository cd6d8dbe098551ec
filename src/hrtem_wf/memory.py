"""Transparent huge pages for PyTorch's large CPU tensors.

glibc's malloc serves each large allocation with a fresh mmap and unmaps it when freed, so every
training step on the CPU faults its activations in afresh, 4 KiB at a time: 16 million page faults
and 40-45 % of the CPU time in the kernel per step of the study's network (16 images of 512 x 512)
here. With THP_MEM_ALLOC_ENABLE=1, PyTorch asks the kernel for 2 MiB pages for tensors of 2 MiB and
more (madvise; this machine's setting, and the common one): 100x fewer faults and 1.71x the images
per second of the pure model step at 512 x 512, the same memory (benchmarks/training.py --only-step;
README, "Speed on the CPU"). The rest of the kernel time is zero-filling the fresh pages. Keeping
freed memory instead (glibc's mallopt: no mmap, no trimming) removed it at 256 x 256 (2.3x faster)
but fragmented the heap: 7.0 instead of 4.9 GB there, and over 24 GB instead of 16 GB at 512 x 512,
killed for memory; not done.
"""

from __future__ import annotations

import os

HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"  # read by PyTorch (c10) once, at its first CPU allocation


def huge_pages_for_tensors() -> None:
    """Ask PyTorch for transparent huge pages for its large CPU tensors; call before torch's
    first CPU tensor (a value already in the environment is kept: 0 turns it off)."""
    os.environ.setdefault(HUGE_PAGES, "1")
