"""GPU slot binding (hrtem_wf.gpu, `hrtem-wf --bind-gpu`), proved without a GPU.

`snakemake --resources gpu=4` only counts GPUs (Snakemake issue 281); binding gives each
concurrent GPU job its own device. HRTEM_WF_GPUS declares a GPU count, so all of this runs on
a machine without GPUs: what is checked is the CUDA_VISIBLE_DEVICES each job ends up with.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from itertools import combinations
from pathlib import Path

import pytest

from conftest import BIN, ROOT
from hrtem_wf import gpu

# A job that binds a GPU, reports it, holds it, then exits 0, raises, or waits to be killed.
HOLDER = textwrap.dedent("""
    import json, os, sys, time
    from hrtem_wf.gpu import bind_gpu
    output, seconds, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    device = bind_gpu()
    record = {"device": device, "bound": time.time(), "env": os.environ["CUDA_VISIBLE_DEVICES"]}
    with open(output + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(output + ".tmp", output)  # the test polls for this file: write it whole
    time.sleep(seconds)
    if mode == "crash":
        raise RuntimeError("this GPU job failed")
""")


@pytest.fixture
def gpu_env(tmp_path, monkeypatch):
    """A clean binding environment: no inherited GPU settings, slots in tmp_path, no held slot."""
    for name in ("CUDA_VISIBLE_DEVICES", "HRTEM_WF_GPUS", "HRTEM_WF_GPU_WAIT_S", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HRTEM_WF_GPU_SLOT_DIR", str(tmp_path / "slots"))
    gpu.release_gpu()
    yield tmp_path
    gpu.release_gpu()


@pytest.fixture
def holders(tmp_path):
    """Start holder processes; every one still running is killed at the end of the test."""
    started = []

    def start(name: str, seconds: float, mode: str = "ok", **env) -> tuple[subprocess.Popen, Path]:
        output = tmp_path / f"{name}.json"
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(output), str(seconds), mode],
            env={**os.environ, **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process, output

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(path: Path, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_visible_gpus_sources(gpu_env, monkeypatch):
    monkeypatch.setenv("PATH", str(gpu_env))  # no nvidia-smi here
    assert gpu.visible_gpus() == []
    # nvidia-smi -L: one line per GPU; MIG instances are indented under their GPU.
    fake = gpu_env / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA A100 (UUID: GPU-a)'\n"
        "echo '  MIG 1g.5gb Device 0: (UUID: MIG-x)'\necho 'GPU 1: NVIDIA A100 (UUID: GPU-b)'\n"
    )
    fake.chmod(0o755)
    assert gpu.visible_gpus() == ["0", "1"]
    monkeypatch.setenv("HRTEM_WF_GPUS", "3")  # a declared count wins over nvidia-smi
    assert gpu.visible_gpus() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4, 5,,7")  # and CUDA_VISIBLE_DEVICES over both
    assert gpu.visible_gpus() == ["4", "5", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # set but empty: CUDA sees no GPU
    assert gpu.visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("HRTEM_WF_GPUS", "four")
    with pytest.raises(ValueError, match="HRTEM_WF_GPUS"):
        gpu.visible_gpus()


def test_no_gpu_is_a_clear_error(gpu_env, monkeypatch):
    monkeypatch.setenv("PATH", str(gpu_env))
    with pytest.raises(RuntimeError, match="device: gpu but no GPU is visible"):
        gpu.bind_gpu()
    monkeypatch.setenv("HRTEM_WF_GPUS", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match="device: gpu but no GPU is visible"):
        gpu.bind_gpu()
    # Through the CLI: the job fails before its stage runs.
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{gpu_env}"}
    result = subprocess.run(
        [str(BIN / "hrtem-wf"), "--bind-gpu", "gpu-probe", "--output", str(gpu_env / "probe.json")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "no GPU is visible" in result.stderr
    assert not (gpu_env / "probe.json").exists()


def test_one_visible_gpu_is_used_as_is(gpu_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # e.g. SLURM bound the job with --gpus=1
    assert gpu.bind_gpu() == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not (gpu_env / "slots").exists()  # nothing to share, so no lock


def test_default_slot_directory(monkeypatch):
    monkeypatch.delenv("HRTEM_WF_GPU_SLOT_DIR", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert gpu.slot_directory().name == f"hrtem_wf-gpu-slots-{os.getuid()}-4242"
    monkeypatch.delenv("SLURM_JOB_ID")
    assert gpu.slot_directory().name == f"hrtem_wf-gpu-slots-{os.getuid()}-local"


def test_four_processes_get_four_devices_and_a_fifth_waits(gpu_env, holders):
    # SLURM-style physical ids: the binding keeps them, it does not renumber.
    env = {"CUDA_VISIBLE_DEVICES": "4,5,6,7", "HRTEM_WF_GPU_WAIT_S": "30"}
    first, first_out = holders("h0", 1.0, **env)  # the first to finish
    outputs = [first_out] + [holders(f"h{i}", 4.0, **env)[1] for i in range(1, 4)]
    records = [wait_for(path) for path in outputs]
    assert sorted(r["device"] for r in records) == ["4", "5", "6", "7"]
    assert all(r["env"] == r["device"] for r in records)
    fifth, fifth_out = holders("h4", 0.0, **env)
    late = wait_for(fifth_out)
    assert fifth.wait(timeout=20) == 0
    assert late["device"] == records[0]["device"]  # the slot h0 left, the only one free
    assert late["bound"] >= records[0]["bound"] + 1.0  # it waited for h0 to finish
    assert first.wait(timeout=5) == 0


def test_failed_or_killed_job_frees_its_slot(gpu_env, holders, monkeypatch):
    env = {"HRTEM_WF_GPUS": "2", "HRTEM_WF_GPU_WAIT_S": "20"}
    _, held_out = holders("holder", 60.0, **env)
    held = wait_for(held_out)
    crashing, crash_out = holders("crash", 0.3, "crash", **env)
    crashed = wait_for(crash_out)
    assert crashing.wait(timeout=20) == 1 and "this GPU job failed" in crashing.stderr.read()
    after_crash, after_crash_out = holders("after-crash", 60.0, **env)
    assert wait_for(after_crash_out)["device"] == crashed["device"] != held["device"]
    # A job killed outright (SIGKILL, OOM killer) frees its slot too: the kernel drops the lock.
    after_crash.send_signal(signal.SIGKILL)
    after_crash.wait(timeout=10)
    _, after_kill_out = holders("after-kill", 0.0, **env)
    assert wait_for(after_kill_out)["device"] == crashed["device"]
    # All taken, and nobody leaves: a bounded wait, then a clear error (here, in this process).
    _, refill_out = holders("refill", 60.0, **env)
    wait_for(refill_out)
    monkeypatch.setenv("HRTEM_WF_GPUS", "2")
    monkeypatch.setenv("HRTEM_WF_GPU_WAIT_S", "1")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="no free GPU after 1 s: all 2 visible GPUs"):
        gpu.bind_gpu()
    assert time.monotonic() - started >= 1.0


# --- through Snakemake: `--resources gpu=4` under profiles/local, as inside a 4-GPU allocation ---

PROBE = "hrtem-wf --bind-gpu gpu-probe --output {output} --seconds 3"


def run_snakemake(directory: Path, snakefile: str, *args: str) -> subprocess.CompletedProcess:
    (directory / "Snakefile").write_text(textwrap.dedent(snakefile))
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        HRTEM_WF_GPUS="4",
        HRTEM_WF_GPU_SLOT_DIR=str(directory / "slots"),
    )
    return subprocess.run(
        [
            str(BIN / "snakemake"),
            "--profile",
            str(ROOT / "profiles" / "local"),
            "--cores",
            "4",
            "--resources",
            "gpu=4",
            *args,
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
    )


def overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


@pytest.mark.workflow
def test_four_gpu_jobs_run_concurrently_each_on_its_own_gpu(tmp_path):
    result = run_snakemake(
        tmp_path,
        f"""
        rule all:
            input: expand("probes/job{{i}}.json", i=range(4))

        rule probe:
            output: "probes/job{{i}}.json"
            resources: gpu=1
            shell: "{PROBE}"
        """,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = [
        json.loads(path.read_text()) for path in sorted((tmp_path / "probes").glob("*.json"))
    ]
    assert len(records) == 4
    assert sorted(r["CUDA_VISIBLE_DEVICES"] for r in records) == ["0", "1", "2", "3"]
    # The four ran at the same time: every job started before any finished.
    assert max(r["start"] for r in records) < min(r["end"] for r in records)


@pytest.mark.workflow
def test_failing_gpu_job_frees_its_gpu_for_the_next_job(tmp_path):
    # Six GPU jobs, four GPUs; the failing one runs first (priority) and exits after 0.5 s.
    result = run_snakemake(
        tmp_path,
        f"""
        rule all:
            input: expand("probes/ok{{i}}.json", i=range(5)), "probes/fail.done"

        rule ok:
            output: "probes/ok{{i}}.json"
            resources: gpu=1
            shell: "{PROBE}"

        rule fail:
            output: "probes/fail.done"  # never made; the probe's JSON is not an output, so it stays
            priority: 100
            resources: gpu=1
            shell: "hrtem-wf --bind-gpu gpu-probe --output probes/fail.json --seconds 0.5 --fail"
                   " && touch {{output}}"
        """,
        "--keep-going",
    )
    assert result.returncode != 0, "the failing job must fail the run"
    failed = json.loads((tmp_path / "probes" / "fail.json").read_text())
    assert failed["failed"] and failed["CUDA_VISIBLE_DEVICES"] in {"0", "1", "2", "3"}
    oks = [json.loads((tmp_path / "probes" / f"ok{i}.json").read_text()) for i in range(5)]
    assert all(r["CUDA_VISIBLE_DEVICES"] in {"0", "1", "2", "3"} for r in oks)
    # Never two jobs on one GPU at the same time.
    for a, b in combinations([failed, *oks], 2):
        assert not (overlaps(a, b) and a["CUDA_VISIBLE_DEVICES"] == b["CUDA_VISIBLE_DEVICES"]), (
            a,
            b,
        )
    # The failed job's GPU went to a job that started after it ended.
    reused = [
        r
        for r in oks
        if r["CUDA_VISIBLE_DEVICES"] == failed["CUDA_VISIBLE_DEVICES"]
        and r["start"] >= failed["end"]
    ]
    assert reused, (failed, oks)
    # Six jobs on four GPUs: never more than four at once (count the jobs running at each start).
    jobs = [failed, *oks]
    assert max(sum(j["start"] <= r["start"] < j["end"] for j in jobs) for r in jobs) <= 4
