"""The SLURM profile (profiles/slurm) on a real single-node SLURM (tests/slurm/slurm-up.sh).

The cluster: one node with this machine's CPUs, four stand-in GPUs (gres gpu:4 on /dev/null and
friends), Features=gpu,cpu, no accounting (so `--account` and `--qos` are accepted and ignored, and
job states come from squeue; MinJobAge=600 keeps finished jobs in `scontrol show job`).

What is local to this cluster is set here, not in the profile: the accounts and QOS come from
the environment variables the profile reads, and the profile's memory / CPU requests (sized for
Perlmutter nodes) are capped, in the test's copy of the profile, to what the test node has.
Status polling is made faster (command line, and a launcher that stops the plugin's back-off) so
that it does not dominate the run time. On this 2-core machine the file takes about 5 minutes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, WorkflowCopy, job_counts, load_config

pytestmark = pytest.mark.workflow  # and every test that needs the cluster: pytest.mark.slurm

SLURM_UP = ROOT / "tests" / "slurm" / "slurm-up.sh"
LOCAL_RULES = {"all"}
CPU_RULES = {"structures", "images", "datasets", "report"}
STAGE_DIRS = ("structures", "simulations", "images", "datasets")  # compared byte for byte
# Local to this test cluster: what the profile reads from the environment.
CLUSTER_ENV = {
    "SLURM_ACCOUNT": "local",
    "SLURM_GPU_ACCOUNT": "local_g",
    "SLURM_QOS": "normal",
    "SLURM_PARTITION": "debug",
}
# Faster status polling than a production cluster wants (the profile's values are for NERSC).
FAST_POLLING = (
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--max-status-checks-per-second",
    "5",
)
# The plugin waits 10 s longer after every status poll that finds no job finished (up to 180 s):
# right on a production cluster, but here it would be most of the run time. The controller runs
# through this launcher, which keeps the interval at 2 s; nothing else changes (the jobs
# themselves run `python -m snakemake` as usual).
FAST_POLL_LAUNCHER = """
import sys
import snakemake_executor_plugin_slurm as slurm
_check_active_jobs = slurm.Executor.check_active_jobs
async def check_active_jobs(self, active_jobs):
    async for job_info in _check_active_jobs(self, active_jobs):
        yield job_info
    self.next_seconds_between_status_checks = 2
slurm.Executor.check_active_jobs = check_active_jobs
from snakemake.cli import main
main(sys.argv[1:])
"""
RUN_TIMEOUT_S = 420
USABLE_NODE_STATES = {"idle", "mixed", "allocated", "completing"}


# ---------------------------------------------------------------------------------------------
# The cluster


def _sinfo_state() -> tuple[bool, str]:
    if shutil.which("sinfo") is None:
        return False, "sinfo not found"
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        return False, "sinfo timed out"
    if result.returncode != 0:
        return False, f"sinfo failed: {result.stderr.strip()}"
    states = {state.rstrip("*~#$@") for state in result.stdout.split()}
    if not states & USABLE_NODE_STATES:
        return False, f"no usable node (node states: {sorted(states) or 'none'})"
    return True, "ok"


def _node() -> dict:
    out = subprocess.run(
        ["scontrol", "show", "node", "-o"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    return fields(out)


@pytest.fixture(scope="session")
def slurm_cluster() -> dict:
    """A working SLURM: the one already running, or the one tests/slurm/slurm-up.sh starts
    (tried once, as root with apt-get or the packages at hand); otherwise the test skips."""
    ok, reason = _sinfo_state()
    if not ok:
        if os.geteuid() != 0:
            pytest.skip(f"SLURM cannot be started here: {reason}, and not root to start one")
        if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
            pytest.skip(f"SLURM cannot be started here: {reason}, no slurmctld and no apt-get")
        try:
            started = subprocess.run(
                ["bash", str(SLURM_UP)], capture_output=True, text=True, timeout=900
            )
            log = (started.stdout + started.stderr).strip().splitlines()
        except subprocess.TimeoutExpired:
            log = ["slurm-up.sh timed out"]
        ok, after = _sinfo_state()
        if not ok:
            pytest.skip(
                f"SLURM cannot be started here: {reason}; after slurm-up.sh: {after}; "
                + " | ".join(log[-3:])
            )
    node = _node()
    return {
        "node": node["NodeName"],
        "cpus": int(node["CPUTot"]),
        "mem_mb": int(node["RealMemory"]),
        "gres": node.get("Gres", ""),
    }


# ---------------------------------------------------------------------------------------------
# Helpers


def fields(line: str) -> dict[str, str]:
    """`Key=Value Key=Value ...` (scontrol -o) as a dict."""
    return dict(re.findall(r"(\S+?)=(\S*)", line))


def cluster_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.update(CLUSTER_ENV, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra)
    return env


def fit_profile_to_node(flow: WorkflowCopy, cluster: dict) -> None:
    """Cap the profile's memory and CPU requests (Perlmutter-sized) at the test node's, in the
    copy only: sbatch refuses a job no node can hold. Everything else stays as the profile has
    it."""
    path = flow.path / "profiles" / "slurm" / "config.yaml"
    profile = yaml.safe_load(path.read_text())

    def cap(resources: dict) -> dict:
        capped = dict(resources)
        if "mem_mb" in capped:
            capped["mem_mb"] = f"min({capped['mem_mb']}, {cluster['mem_mb']})"
        for key in ("cpus_per_task", "cpus_per_gpu"):
            value = capped.get(key)
            if isinstance(value, int) and value > cluster["cpus"]:
                capped[key] = cluster["cpus"]
        return capped

    def as_dict(resources) -> dict:
        if isinstance(resources, list):  # ["mem_mb=1000", ...]
            return dict(item.split("=", 1) for item in resources)
        return dict(resources or {})

    if "default-resources" in profile:
        profile["default-resources"] = cap(as_dict(profile["default-resources"]))
    # A group job asks for the sum of what its members could run at once (Snakemake's group
    # resources, capped by `--resources` for local-scoped ones): cap memory and CPUs at the node,
    # so a group of small jobs fits on this 2-core node (on a big node it runs them side by side).
    limits = as_dict(profile.get("resources"))
    for key, node_value in (("mem_mb", cluster["mem_mb"]), ("cpus_per_task", cluster["cpus"])):
        value = limits.get(key)
        limits[key] = min(int(value), node_value) if value is not None else node_value
    profile["resources"] = limits
    scopes = as_dict(profile.get("set-resource-scopes"))
    scopes["cpus_per_task"] = "local"  # a cap per group job, not a total over running jobs
    profile["set-resource-scopes"] = scopes
    if "set-resources" in profile:
        profile["set-resources"] = {
            rule: cap(as_dict(res)) for rule, res in profile["set-resources"].items()
        }
    path.write_text(yaml.safe_dump(profile, sort_keys=False))


def slurm_flow(path: Path, cluster: dict, config: dict | None = None) -> WorkflowCopy:
    path.mkdir(parents=True, exist_ok=True)
    flow = WorkflowCopy(
        path, config if config is not None else load_config("tests/configs/tiny.yaml")
    )
    fit_profile_to_node(flow, cluster)
    return flow


def snakemake_command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        FAST_POLL_LAUNCHER,
        "--profile",
        "profiles/slurm",
        *FAST_POLLING,
        *args,
    ]


def cancel_jobs_in(path: Path) -> None:
    """scancel whatever is still queued or running from this directory (after a failed test)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%Z"], capture_output=True, text=True).stdout
    ids = [
        line.split("|")[0] for line in out.splitlines() if line.split("|")[-1].startswith(str(path))
    ]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True)


def run_profile(flow: WorkflowCopy, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(
            snakemake_command(*args),
            cwd=flow.path,
            env=cluster_env(),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        cancel_jobs_in(flow.path)
        raise AssertionError(
            f"snakemake {args} did not finish in {RUN_TIMEOUT_S} s:\n{error.stdout}\n{error.stderr}"
        ) from None
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake --profile profiles/slurm {args} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


def target_jobs(script: str) -> list[tuple[str, str]]:
    """The (rule, wildcards) a Snakemake sbatch job runs, from its batch script (--target-jobs)."""
    match = re.search(r"--target-jobs\s+(.*?)(?:\s--[a-z]|$)", script, re.S)
    if not match:
        return []
    return re.findall(r"([A-Za-z_]\w*):((?:\w+=[^,'\"\s]*,?)*)", match.group(1))


def sbatch_jobs(path: Path) -> list[dict]:
    """Every SLURM job submitted from this workflow copy (finished ones included, MinJobAge),
    with the rule instances it ran."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True
    ).stdout
    jobs = []
    for line in out.splitlines():
        record = fields(line)
        if record.get("WorkDir") != str(path):
            continue
        script = subprocess.run(
            ["scontrol", "write", "batch_script", record["JobId"], "-"],
            capture_output=True,
            text=True,
        ).stdout
        record["targets"] = target_jobs(script)
        record["rules"] = sorted({rule for rule, _ in record["targets"]})
        jobs.append(record)
    return sorted(jobs, key=lambda r: int(r["JobId"]))


def requests_gpu(job: dict) -> bool:
    tres = " ".join(
        job.get(key, "") for key in ("TRES", "TresPerJob", "TresPerNode", "TresPerTask")
    )
    return "gpu" in tres


def features(job: dict) -> set[str]:
    value = job.get("Features", "(null)")
    return set() if value in ("(null)", "") else set(re.split(r"[&,|]", value))


def digests(flow: WorkflowCopy) -> dict[str, str]:
    """sha256 of every file of the compared stages, by path relative to results/."""
    results = flow.path / "results"
    return {
        str(file.relative_to(results)): hashlib.sha256(file.read_bytes()).hexdigest()
        for stage in STAGE_DIRS
        for file in sorted((results / stage).rglob("*"))
        if file.is_file()
    }


# ---------------------------------------------------------------------------------------------
# The undisturbed run: the reference for the other tests


@pytest.fixture(scope="session")
def slurm_tiny_run(slurm_cluster, tmp_path_factory):
    """The tiny config run to completion through profiles/slurm on the test cluster."""
    flow = slurm_flow(tmp_path_factory.mktemp("slurm-tiny"), slurm_cluster)
    start = time.monotonic()
    result = run_profile(flow)
    seconds = time.monotonic() - start
    return {"flow": flow, "result": result, "seconds": seconds, "jobs": sbatch_jobs(flow.path)}


@pytest.mark.slurm
def test_tiny_config_runs_through_slurm_profile(slurm_tiny_run):
    flow = slurm_tiny_run["flow"]
    result = slurm_tiny_run["result"]
    report = flow.path / "results" / "report"
    for name in ("summary.md", "training_curves.png", "examples.png"):
        assert (report / name).stat().st_size > 0, name

    # Every non-local rule instance ran inside an sbatch job, and grouping packed them.
    counts = job_counts(result.stdout + result.stderr)
    instances = {rule: n for rule, n in counts.items() if rule not in LOCAL_RULES | {"total"}}
    jobs = slurm_tiny_run["jobs"]
    ran = [target for job in jobs for target in job["targets"]]
    ran_counts = {rule: sum(1 for r, _ in ran if r == rule) for rule in instances}
    assert ran_counts == instances, (ran_counts, instances)
    assert all(job["JobState"] == "COMPLETED" for job in jobs), [
        (job["JobId"], job["rules"], job["JobState"]) for job in jobs
    ]
    # Undisturbed, nothing fails and nothing needs a retry (a refused sbatch shows up only here).
    log = result.stdout + result.stderr
    assert "Trying to restart" not in log and "Error in " not in log, log[-6000:]
    n_instances = sum(instances.values())
    print(
        f"\nSLURM tiny run: {len(jobs)} sbatch jobs for {n_instances} rule instances "
        f"({instances}) in {slurm_tiny_run['seconds']:.0f} s"
    )
    for job in jobs:
        print(
            f"  job {job['JobId']}: {len(job['targets'])} x {','.join(job['rules'])} "
            f"features={job.get('Features')} tres={job.get('TRES')} "
            f"tres_per_job={job.get('TresPerJob', '-')} account={job.get('Account')}"
        )
    assert len(jobs) < n_instances, "grouping should pack rule instances into fewer sbatch jobs"

    # All blocks of the tiny config have `device: cpu`: no job asks for a GPU, all for `-C cpu`.
    for job in jobs:
        assert not requests_gpu(job), (job["rules"], job.get("TRES"), job.get("TresPerJob"))
        assert features(job) == {"cpu"}, (job["rules"], job.get("Features"))
        assert job.get("Account") == CLUSTER_ENV["SLURM_ACCOUNT"], (
            job["rules"],
            job.get("Account"),
        )


@pytest.mark.slurm
def test_gpu_blocks_request_gpu_and_cpu_rules_do_not(slurm_tiny_run, slurm_cluster, tmp_path):
    """Blocks with `device: gpu`: their simulate and train jobs ask SLURM for a GPU and the `gpu`
    node feature (and the GPU account). There is no CUDA here, so those jobs then fail; what is
    checked is what they asked for."""
    flow = slurm_tiny_run["flow"].clone(tmp_path / "gpu")
    config = flow.config
    config["simulations"]["tiny_gpu"] = dict(config["simulations"]["tiny_fp"], device="gpu")
    config["models"]["tiny_unet"]["device"] = "gpu"
    flow.write_config(config)
    targets = [
        "results/simulations/tiny_gpu/00000.zarr",  # new block: missing output
        "results/models/tiny_unet/seed0/weights.pt",
    ]  # device changed: params changed
    result = run_profile(flow, "--retries", "0", *targets, check=False)
    assert result.returncode != 0  # no CUDA on this machine
    jobs = sbatch_jobs(flow.path)
    by_rule = {rule: job for job in jobs for rule in job["rules"]}
    assert set(by_rule) == {"simulations", "models"}, (
        [(job["JobId"], job["rules"]) for job in jobs],
        result.stdout[-3000:],
        result.stderr[-3000:],
    )
    for rule in ("simulations", "models"):
        job = by_rule[rule]
        print(
            f"\n  {rule} (device: gpu): job {job['JobId']} features={job.get('Features')} "
            f"tres_per_job={job.get('TresPerJob', '-')} cpus/task={job.get('CPUs/Task')} "
            f"account={job.get('Account')} state={job.get('JobState')}"
        )
        assert requests_gpu(job), (rule, job.get("TRES"), job.get("TresPerJob"))
        assert "gpu" in features(job), (rule, job.get("Features"))
        assert job.get("Account") == CLUSTER_ENV["SLURM_GPU_ACCOUNT"], (rule, job.get("Account"))
    # and in the CPU run every CPU rule stayed off GPUs (checked per job in the test above)
    cpu_jobs = [job for job in slurm_tiny_run["jobs"] if set(job["rules"]) <= CPU_RULES]
    assert cpu_jobs and not any(requests_gpu(job) for job in cpu_jobs)


@pytest.mark.slurm
def test_cancelled_job_is_retried_and_outputs_match(slurm_tiny_run, slurm_cluster, tmp_path):
    """scancel a running job: the profile's retries resubmit it, the run completes, and the
    outputs are byte-identical to the undisturbed run. The run goes as far as the dataset (the
    last output compared; training would add a minute and nothing to the check)."""
    flow = slurm_flow(tmp_path / "cancel", slurm_cluster)
    dataset = flow.config["models"]["tiny_unet"]["dataset"]
    targets = [f"results/datasets/{dataset}.zarr", f"results/datasets/{dataset}.parquet"]
    log = open(tmp_path / "snakemake.log", "w")
    process = subprocess.Popen(
        snakemake_command(*targets),
        cwd=flow.path,
        env=cluster_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cancelled = None
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while cancelled is None and process.poll() is None and time.monotonic() < deadline:
            out = subprocess.run(
                ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k|%Z"], capture_output=True, text=True
            ).stdout
            for line in out.splitlines():
                job_id, comment, workdir = line.split("|", 2)
                # a simulate job: mid-chain, with the structures already written upstream
                if workdir == str(flow.path) and "simulations" in comment:
                    time.sleep(2)  # let it get going
                    subprocess.run(["scancel", job_id], check=True)
                    cancelled = job_id
                    break
            time.sleep(0.5)
        process.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        cancel_jobs_in(flow.path)
        raise
    finally:
        log.close()
    output = (tmp_path / "snakemake.log").read_text()
    assert cancelled is not None, "no simulate job was seen running:\n" + output[-4000:]
    assert process.returncode == 0, output[-6000:]
    jobs = sbatch_jobs(flow.path)
    states = {job["JobId"]: job["JobState"] for job in jobs}
    assert states[cancelled] == "CANCELLED", states
    simulate_jobs = [job for job in jobs if "simulations" in job["rules"]]
    assert len(simulate_jobs) >= 2 and simulate_jobs[-1]["JobState"] == "COMPLETED", [
        (job["JobId"], job["JobState"]) for job in simulate_jobs
    ]
    print(
        f"\ncancelled SLURM job {cancelled}; resubmitted as "
        f"{[job['JobId'] for job in simulate_jobs if job['JobId'] != cancelled]}"
    )

    reference, rerun = digests(slurm_tiny_run["flow"]), digests(flow)
    assert reference and set(rerun) == set(reference), set(rerun) ^ set(reference)
    differ = sorted(name for name in reference if rerun[name] != reference[name])
    assert not differ, f"{len(differ)} of {len(reference)} files differ: {differ[:12]}"


def test_dry_run_needs_no_slurm(tmp_path):
    """`snakemake -n --profile profiles/slurm` plans without SLURM: a dry run never submits. PATH
    holds only a few basic tools (no sinfo/sbatch/squeue), and no SLURM variables are set."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("bash", "sh", "which", "env", "cat", "uname"):
        found = shutil.which(tool)
        if found:
            (tools / tool).symlink_to(found)
    path = str(tools)
    for tool in ("sinfo", "sbatch", "squeue", "scontrol", "sacct"):
        assert shutil.which(tool, path=path) is None
    (tmp_path / "flow").mkdir()
    flow = WorkflowCopy(tmp_path / "flow", load_config("tests/configs/tiny.yaml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env["PATH"] = path
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm"],
        cwd=flow.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts == {
        "structures": 3,
        "simulations": 3,
        "images": 3,
        "datasets": 1,
        "models": 1,
        "evaluations": 1,
        "report": 1,
        "all": 1,
        "total": 14,
    }, counts
    assert not (flow.path / "results").exists()
