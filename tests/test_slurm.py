"""Sweeps through a real SLURM cluster (`bash scripts/slurm_local.sh up`): the smoke sweep, and
preemption that loses no work. Without a cluster these tests are skipped with the reason;
with ARNN_REQUIRE_SLURM=1 (as .ci/run sets after bringing the cluster up) they fail instead."""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import torch

from arnn.checkpoint import CHECKPOINT
from arnn.collect import main as collect_main
from arnn.results import RunResult
from tests.fixtures import ROOT, read_checkpoint, run_cli

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CPU_SLURM = ("hydra/launcher=slurm_cpu",)


def _unavailable() -> str | None:
    if shutil.which("sinfo") is None:
        return "sinfo is not installed"
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"sinfo failed: {proc.stderr.strip()}"
    if not any(state.rstrip("*") in ("idle", "mix", "alloc") for state in proc.stdout.split()):
        return f"no node is up (sinfo: {proc.stdout.strip() or 'nothing'})"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("ARNN_REQUIRE_SLURM") == "1":
            pytest.fail(f"ARNN_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(f"no SLURM cluster ({reason}): start one with "
                    "`sudo bash scripts/slurm_local.sh up`")


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_smoke_sweep_through_slurm(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "+sweep=smoke", *CPU_SLURM, f"hydra.sweep.dir={sweep}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [RunResult.read(sweep / str(j)).status for j in range(4)] == ["completed"] * 4
    assert collect_main([str(sweep)]) is None
    assert "| 4 | 0 | 0 | 0 | 0 | 0 | 0 | 4 |" in (sweep / "results.md").read_text()
    # without accounting, sacct fails: one warning, not one per poll
    polls = set(re.findall(r"Call #(\d+) - Bypassing sacct error", proc.stdout + proc.stderr))
    assert len(polls) <= 1, polls


def _log_steps(job_dir, total):
    text = (job_dir / "train.log").read_text()
    return [int(s) for s in re.findall(rf"step (\d+)/{total} loss", text)]


def test_preempted_job_checkpoints_at_the_signal_and_resumes_bit_identical(tmp_path):
    sweep, steps = tmp_path / "sweep", 6000
    # Two identical jobs: 0 is preempted once, 1 runs through; both on the same cluster, so
    # the comparison holds the thread settings equal.
    args = ["-m", *CPU_SLURM, "seed=0,0", "model.hidden_size=16", "train.batch_size=32",
            "device=cpu", f"train.steps={steps}", "train.log_every=10",
            f"train.eval_every={steps}", "train.checkpoint_every=5000",
            f"hydra.sweep.dir={sweep}"]
    sweeper = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job = sweep / "0"
        _wait(lambda: (job / "train.log").exists() and len(_log_steps(job, steps)) >= 20,
              240, "job 0 to train 200 steps")
        job_id = _wait(lambda: next((p.name for p in (sweep / ".submitit").iterdir()
                                     if p.name.endswith("_0")), None), 30, "job 0's id")
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        requeued = _wait(lambda: (r := RunResult.read(job)) and r.status == "requeued" and r,
                         120, "results.json to say requeued")
        saved = requeued.steps
        assert requeued.requeues == 1 and 200 <= saved < 5000  # not a periodic checkpoint
        assert read_checkpoint(job / CHECKPOINT)["step"] == saved
        collect_main([str(sweep), "--out", str(tmp_path / "during")])
        during = (tmp_path / "during" / "results.md").read_text()
        assert f"requeued by SLURM, 1 time(s); step {saved} saved" in during
        output, _ = sweeper.communicate(timeout=420)
    finally:
        if sweeper.poll() is None:  # failed: its jobs would slow down every later test
            sweeper.kill()
            subprocess.run(["scancel", *{p.name.split("_")[0] for p in
                                         (sweep / ".submitit").glob("[0-9]*")}])
    assert sweeper.returncode == 0, output[-3000:]
    result = RunResult.read(job)
    assert result.status == "completed" and result.steps == steps and result.requeues == 1
    # each logged step once: a step trained twice would log its window twice
    assert _log_steps(job, steps) == list(range(10, steps + 1, 10))
    a, b = read_checkpoint(job / CHECKPOINT)["model"], read_checkpoint(sweep / "1" / CHECKPOINT)
    assert all(torch.equal(a[k], b["model"][k]) for k in a)


def _start_sleeper(tmp_path) -> tuple[str, Callable[[], list[str]]]:
    """Submit a job that sleeps; wait until it runs. Returns its id and a probe listing its pids."""
    marker = f"arnn-slurm-test-{os.getpid()}"
    sleeper = f"python3 -c 'import time; time.sleep(600)' {marker}"  # the marker: its argv
    submit = subprocess.run(["sbatch", "--wrap", sleeper, "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, check=True, cwd=tmp_path)
    job_id = submit.stdout.split()[-1]

    def running() -> list[str]:
        return subprocess.run(["pgrep", "-f", marker], capture_output=True,
                              text=True).stdout.split()

    _wait(running, 60, f"job {job_id} to start")
    return job_id, running


def _slurm_local(command: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "slurm_local.sh"), command],
                          capture_output=True, text=True, timeout=300, check=check)


def test_down_cancels_running_jobs_and_waits_for_them(tmp_path):
    """`slurm_local.sh down` while a job runs: the job and its slurmstepd end with the cluster
    (they used to outlive the daemons). The cluster is brought up again for what follows."""
    job_id, running = _start_sleeper(tmp_path)
    try:
        down = _slurm_local("down")
        assert down.returncode == 0 and f"cancelling job(s) {job_id}" in down.stdout, down
        assert running() == [] and subprocess.run(["pgrep", "-x", "slurmstepd"]).returncode
    finally:
        _slurm_local("up", check=True)


def test_up_cancels_the_jobs_of_a_cluster_that_was_not_brought_down(tmp_path):
    """The machine stops while a job runs, without `down`: the controller saves its state (the job
    running), every process ends. The next `up` recovers that job, which would hold the node
    allocated for good ("node is not idle: alloc"); `up` cancels it and the node is idle."""
    job_id, running = _start_sleeper(tmp_path)
    state = "/var/lib/arnn-slurm"
    for daemon in ("slurmctld", "slurmd"):  # as a shutdown does: TERM, the controller saves
        pid = int(open(f"{state}/{daemon}.pid").read())
        os.kill(pid, 15)
        _wait(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), 30, f"{daemon} to stop")
    subprocess.run(["pkill", "-KILL", "-x", "slurmstepd"])
    for pid in running():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), 9)
    _wait(lambda: not running(), 30, "the job to end")
    up = _slurm_local("up")
    try:
        assert up.returncode == 0, up
        assert f"cancelling job(s) {job_id} left by a cluster" in up.stdout, up.stdout
        assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout == ""
    finally:
        if up.returncode != 0:  # leave a usable cluster to the tests that follow
            _slurm_local("down")
            _slurm_local("up")
