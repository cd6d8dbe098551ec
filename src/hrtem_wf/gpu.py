"""Bind this process to one GPU of the node, exclusively, for the life of the process.

`snakemake --resources gpu=4` only counts GPUs: it never says which GPU a job should use
(Snakemake issue 281), so four concurrent GPU jobs would all land on device 0. `bind_gpu()`
closes that gap: each job takes a lock file per device id in a slot directory shared by the
jobs of one allocation, keeps the first free one, and sets CUDA_VISIBLE_DEVICES to it. The
kernel drops a flock when its process exits, crash or not, so a failed job frees its slot.

Call it before CuPy or torch is imported (`hrtem-wf --bind-gpu ...` does): CUDA reads
CUDA_VISIBLE_DEVICES once, when it initialises.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("hrtem_wf")

POLL_S = 0.5  # how often a job waits for a slot when every GPU is taken
DEFAULT_WAIT_S = 600.0  # HRTEM_WF_GPU_WAIT_S overrides

_held: IO | None = None  # the locked slot file; the lock lives as long as this object
_held_device: str | None = None


def visible_gpus() -> list[str]:
    """The device ids this process may use, in order of preference."""
    # SLURM (--gpus) and users set CUDA_VISIBLE_DEVICES; CUDA itself hides everything else.
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        # Set but empty means "no GPU" to CUDA, so it means no GPU here too.
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    # A declared count: for tests, and for machines where nvidia-smi is not on PATH.
    declared = os.environ.get("HRTEM_WF_GPUS", "").strip()
    if declared:
        try:
            count = int(declared)
        except ValueError:
            raise ValueError(f"HRTEM_WF_GPUS must be a GPU count, not {declared!r}") from None
        return [str(i) for i in range(count)]
    return [str(i) for i in range(_count_nvidia_smi())]


def _count_nvidia_smi() -> int:
    """How many GPUs `nvidia-smi -L` lists (0 when it is missing or fails)."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return 0
    try:
        listing = subprocess.run(
            [executable, "-L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):  # driver missing or hung: treat as no GPU
        return 0
    # Count the "GPU i: ..." lines only; MIG instances are listed indented below their GPU.
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def slot_directory() -> Path:
    """Where the lock files live: shared by the jobs of one allocation on one node."""
    if os.environ.get("HRTEM_WF_GPU_SLOT_DIR"):
        return Path(os.environ["HRTEM_WF_GPU_SLOT_DIR"])
    # Per user and per SLURM job: two allocations on one node (or two users) never share slots.
    job = os.environ.get("SLURM_JOB_ID") or "local"
    return Path(tempfile.gettempdir()) / f"hrtem_wf-gpu-slots-{os.getuid()}-{job}"


def _try_lock(slot_dir: Path, device: str) -> IO | None:
    """The open slot file of `device`, locked by us; None when another process holds it."""
    # Device ids may be UUIDs (MIG ones contain '/'): keep the file name plain.
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", device)
    handle = open(slot_dir / f"gpu-{name}.lock", "a+")  # "a+": never truncate a held file
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.truncate(0)  # for people looking at the directory: the last holder of this slot
    handle.write(f"pid {os.getpid()} device {device}\n")
    handle.flush()
    return handle


def bind_gpu(slot_dir: str | os.PathLike | None = None) -> str:
    """Take one free visible GPU for this process, set CUDA_VISIBLE_DEVICES to it, return its id.

    Waits (HRTEM_WF_GPU_WAIT_S seconds, default 600) while all are taken, then raises
    RuntimeError; raises RuntimeError at once when no GPU is visible at all.
    """
    global _held, _held_device
    if _held_device is not None:  # bound already: keep the slot we have
        return _held_device
    devices = visible_gpus()
    if not devices:
        raise RuntimeError(
            "device: gpu but no GPU is visible (none in CUDA_VISIBLE_DEVICES, else in "
            "HRTEM_WF_GPUS, "
            "else in `nvidia-smi -L`); run on a GPU node, or set device: cpu"
        )
    if len(devices) == 1:
        # Already bound by the scheduler (e.g. SLURM --gpus=1): nothing to share, nothing to lock.
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[0]
        _held_device = devices[0]
        return devices[0]
    slot_dir = Path(slot_dir) if slot_dir is not None else slot_directory()
    slot_dir.mkdir(parents=True, exist_ok=True)
    wait_s = float(os.environ.get("HRTEM_WF_GPU_WAIT_S", DEFAULT_WAIT_S))
    deadline = time.monotonic() + wait_s
    waiting_logged = False
    while True:
        for device in devices:
            handle = _try_lock(slot_dir, device)
            if handle is not None:
                _held, _held_device = handle, device
                os.environ["CUDA_VISIBLE_DEVICES"] = device
                return device
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"no free GPU after {wait_s:g} s: all {len(devices)} visible GPUs "
                f"({','.join(devices)}) are held by other jobs (lock files in {slot_dir}); "
                "run fewer GPU jobs at once (snakemake --resources gpu=N) or raise "
                "HRTEM_WF_GPU_WAIT_S"
            )
        if not waiting_logged:  # more GPU jobs than GPUs: a second workflow, or gpu=N too high
            log.warning(
                "all %d GPUs are busy; waiting up to %g s for one (slots in %s)",
                len(devices),
                wait_s,
                slot_dir,
            )
            waiting_logged = True
        time.sleep(POLL_S)


def release_gpu() -> None:
    """Give the slot back now (normally the process exit does it)."""
    global _held, _held_device
    if _held is not None:
        _held.close()  # closing the only descriptor drops the flock
    _held, _held_device = None, None


def write_probe(output: str | os.PathLike, seconds: float = 0.0, failed: bool = False) -> dict:
    """Diagnostic (`hrtem-wf gpu-probe`): hold this job's GPU binding `seconds` long (so that
    concurrent jobs overlap), then write it as JSON to `output`: CUDA_VISIBLE_DEVICES, pid, host,
    start and end, and `failed` (the job then fails on purpose). Tests prove the binding with it,
    without a GPU."""
    import json
    import socket

    start = time.time()
    time.sleep(seconds)
    record = {
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start": start,
        "end": time.time(),
        "failed": failed,
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(record, indent=2) + "\n")
    return record
