"""The SLURM launcher for real: a 2-point grid through `sbatch` on a one-node cluster on this machine.

`launch/local_slurm.sh start` brings the cluster up (munged, slurmctld, slurmd; no accounting);
`pgf-train -m hydra/launcher=slurm ...` submits the grid as a job array. One point is requeued
with `scontrol requeue` once it is past its first checkpoint, as a preemption does: it must
resume from its checkpoint (status.json's resumed_from) and end with every train line of
metrics.jsonl exactly once. Needs root and Debian's slurmctld, slurmd, slurm-client and munge
(.ci/run installs them); skips without them. About 50 s on the project's 2 shared cores
(2026-12-05: 41 s for the test, 48-53 s with starting and stopping the cluster).
The last test, of the filter that shows submitit's failing-sacct warning once, needs neither.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "launch" / "local_slurm.sh"
PGF_TRAIN = Path(sys.executable).parent / "pgf-train"
STATE = Path(os.environ.get("PGF_SLURM_DIR", "/var/spool/pgf-local-slurm"))  # the script's logs
COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo")
APT = "apt-get install slurmctld slurmd slurm-client munge"

STEPS, LOG_EVERY, CHECKPOINT_EVERY = 1000, 2, 20  # ~10 s of training a point: time to requeue one
GRID = ["-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",        # the launcher's 64 GB is more than the local node has
        "hydra.launcher.timeout_min=10",  # a wall limit: a job left behind by a broken run ends by itself
        "data=digits", "model.kwargs.embed_dim=32", "model.kwargs.depth=1", "model.kwargs.num_heads=2",
        "threads=1", "logger=local", "sparsity=1:4,1:8", "recipe=srste", f"budget.steps={STEPS}",
        f"log_every={LOG_EVERY}", f"checkpoint_every={CHECKPOINT_EVERY}", "diagnostics_every=0", "sweep=slurm"]
REQUEUED, OTHER = "vit-n1m4-srste-s0", "vit-n1m8-srste-s0"  # array tasks 0 and 1, in the grid's order


def sh(*command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    """The local cluster: started here (and stopped after) unless it already runs."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root (launch/local_slurm.sh starts munged, slurmctld, slurmd)")
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # the daemons: sbin
    missing = [c for c in COMMANDS if shutil.which(c, path=path) is None]
    if missing:
        pytest.skip(f"no SLURM here ({', '.join(missing)} missing): {APT}")
    if not PGF_TRAIN.exists():
        pytest.skip("pgf-train is not installed next to this Python")
    already = sh("bash", str(SCRIPT), "status").returncode == 0
    if not already:
        done = sh("bash", str(SCRIPT), "start", timeout=120)
        assert done.returncode == 0, f"launch/local_slurm.sh start failed:\n{done.stdout}{done.stderr}"
    yield
    if not already:
        done = sh("bash", str(SCRIPT), "stop", timeout=60)
        assert done.returncode == 0, done.stderr


def train_steps(run_dir: Path) -> list:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    return [e["step"] for e in events if e.get("event") == "train"]


def without_progress_bars(text: str) -> str:
    lines = text.replace("\r", "\n").splitlines()
    return "\n".join(line for line in lines if not (line.startswith("train:") and "step/s" in line))


def diagnostics(tmp_path: Path, sweep: Path) -> str:
    """What to read when it fails: the launcher's output, the jobs' logs, the queue and slurmctld's log."""
    parts = [f"--- pgf-train (launcher) ---\n{(tmp_path / 'launcher.log').read_text()[-4000:]}"]
    for log in sorted(sweep.glob(".submitit/*/*_log.*")):
        parts.append(f"--- {log.relative_to(sweep)} ---\n{without_progress_bars(log.read_text())[-3000:]}")
    for command in (["squeue", "-a"], ["sinfo"]):
        try:
            done = sh(*command, timeout=10)
            parts.append(f"--- {' '.join(command)} ---\n{done.stdout}{done.stderr}")
        except subprocess.TimeoutExpired:
            parts.append(f"--- {' '.join(command)}: no answer in 10 s ---")
    if (STATE / "slurmctld.log").exists():
        parts.append(f"--- {STATE / 'slurmctld.log'} ---\n{(STATE / 'slurmctld.log').read_text()[-3000:]}")
    return "\n".join(parts)


def job_state(job: str) -> str:
    return sh("squeue", "-h", "-j", job, "-o", "%T").stdout.strip()


def array_tasks(sweep: Path) -> list:
    """The grid's array tasks, `<job id>_<index>`, from the folders submitit makes for their logs."""
    folder = sweep / ".submitit"
    return sorted(p.name for p in folder.iterdir() if re.fullmatch(r"\d+_\d+", p.name)) if folder.is_dir() else []


def cancel(sweep: Path) -> None:
    """scancel the grid's jobs and wait until they are gone (a broken run leaves nothing running)."""
    for array in sorted({task.split("_")[0] for task in array_tasks(sweep)}):
        sh("scancel", array)
        deadline = time.monotonic() + 60
        while sh("squeue", "-h", "-j", array).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)


def test_a_grid_on_slurm_survives_a_requeue(cluster, tmp_path):
    started = time.monotonic()
    sweep = tmp_path / "multirun" / "slurm"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    env.update(WANDB_MODE="disabled", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")  # sbatch passes them on
    with open(tmp_path / "launcher.log", "w") as out:
        launcher = subprocess.Popen([str(PGF_TRAIN), *GRID], cwd=tmp_path, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    ended = False

    def fail(why: str):
        pytest.fail(f"{why} ({time.monotonic() - started:.0f} s in)\n{diagnostics(tmp_path, sweep)}", pytrace=False)

    def wait_for(condition, timeout: float, why: str, step=lambda: None):
        deadline = time.monotonic() + timeout
        while not condition():
            if launcher.poll() is not None:
                fail(f"pgf-train exited ({launcher.returncode}) while waiting: {why}")
            if time.monotonic() > deadline:
                fail(f"{why}: not within {timeout:.0f} s")
            step()
            time.sleep(0.05)

    try:
        # 1. The point trains under SLURM and passes its first checkpoint.
        wait_for(lambda: any(s > CHECKPOINT_EVERY + LOG_EVERY for s in train_steps(sweep / REQUEUED)), 180,
                 f"{REQUEUED} past its first checkpoint (step {CHECKPOINT_EVERY})")
        tasks = array_tasks(sweep)
        assert len(tasks) == 2 and tasks[0].endswith("_0"), tasks
        job = tasks[0]

        # 2. Requeue it, as a preemption would: SLURM stops the job (SIGTERM: pgf-train checkpoints)
        # and puts it back in the queue. A requeued job waits ~2 min before it may start again
        # (its BeginTime); StartTime=now lets it start at once.
        requeue = sh("scontrol", "requeue", job)
        if requeue.returncode != 0:
            fail(f"scontrol requeue {job}: {requeue.stderr.strip()}")
        pending = []

        def release():
            if job_state(job) == "PENDING":
                pending.append(True)
                sh("scontrol", "update", f"JobId={job}", "StartTime=now")

        def running_again():
            try:
                resumed = json.loads((sweep / REQUEUED / "status.json").read_text()).get("resumed_from")
            except (OSError, ValueError):  # being replaced
                resumed = None
            return (pending and job_state(job) != "PENDING") or bool(resumed)

        wait_for(running_again, 90, f"{job} requeued and running again", step=release)
        restarts = sh("scontrol", "show", "job", job).stdout
        assert "Restarts=1" in restarts, restarts

        # 3. The grid ends: the launcher returns once both result files are written.
        try:
            code = launcher.wait(timeout=240)
        except subprocess.TimeoutExpired:
            fail("the grid did not finish within 240 s of the requeue")
        if code != 0:
            fail(f"pgf-train -m exited {code}")
        ended = True
    finally:
        if not ended:  # stop the launcher, then its jobs
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
            try:
                cancel(sweep)
            except subprocess.TimeoutExpired:
                pass  # the cluster does not answer: the jobs' 10 min wall limit ends them

    for name in (REQUEUED, OTHER):
        assert (sweep / name / "summary.json").exists(), f"{name} did not finish\n{diagnostics(tmp_path, sweep)}"
    status = json.loads((sweep / REQUEUED / "status.json").read_text())
    assert status["status"] == "finished" and 0 < status["resumed_from"] < STEPS, status
    assert not json.loads((sweep / OTHER / "status.json").read_text()).get("resumed_from")
    for name in (REQUEUED, OTHER):  # cut back to the checkpoint, then continued: no gap, no repeat
        assert train_steps(sweep / name) == list(range(LOG_EVERY, STEPS + 1, LOG_EVERY)), name
    log = without_progress_bars((sweep / ".submitit" / job / f"{job}_0_log.err").read_text())
    # how SLURM words the stop varies with timing ("CANCELLED ... DUE TO JOB REQUEUE", or srun's "forcing job
    # termination" when its SIGCONT comes first); the resume line is what the run itself writes
    assert f"from step {status['resumed_from']}" in log, log[-3000:]
    # Without accounting every sacct poll fails: submitit's warning shows once (sweeps/callback.py).
    output = (tmp_path / "launcher.log").read_text()
    assert "Call #2 - Bypassing sacct error" not in output, output[-3000:]
    assert "pgf-train: sweep multirun/slurm: 2 finished" in output, output[-3000:]


def test_submitits_sacct_warning_shows_once_per_launch(caplog):
    """Without accounting every sacct poll fails; the sweep callback lets the first warning through."""
    from pgfsparse.sweeps.callback import QuietSacct, quiet_sacct

    logger = logging.getLogger("submitit")
    earlier = [f for f in logger.filters if isinstance(f, QuietSacct)]  # from an in-process multirun
    for quiet in earlier:
        logger.removeFilter(quiet)
    quiet_sacct()
    quiet_sacct()  # once per logger
    try:
        assert sum(isinstance(f, QuietSacct) for f in logger.filters) == 1
        with caplog.at_level(logging.INFO, logger="submitit"):
            for call in (1, 2, 3):
                logger.warning(f"Call #{call} - Bypassing sacct error Command '['sacct', '-j', '7']' returned "
                               "non-zero exit status 1., status may be inaccurate.")
            logger.warning("Bypassing signal SIGCONT")
            logger.info("Requeued job 7_0 (19 remaining timeouts)")
        messages = [r.getMessage() for r in caplog.records if r.name == "submitit"]
        assert len(messages) == 3 and messages[0].startswith("Call #1 - Bypassing sacct error")
        assert "further sacct errors are not shown" in messages[0]
        assert messages[1:] == ["Bypassing signal SIGCONT", "Requeued job 7_0 (19 remaining timeouts)"]
        caplog.clear()
        quiet_sacct()  # the next launch in this process shows its first one again
        with caplog.at_level(logging.INFO, logger="submitit"):
            for call in (1, 2):
                logger.warning(f"Call #{call} - Bypassing sacct error")
        assert [r.getMessage() for r in caplog.records if r.name == "submitit"] == [
            "Call #1 - Bypassing sacct error (pgf-train: further sacct errors are not shown)"]
    finally:
        for quiet in [f for f in logger.filters if isinstance(f, QuietSacct)]:
            logger.removeFilter(quiet)
        for quiet in earlier:
            logger.addFilter(quiet)
