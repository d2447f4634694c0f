"""Fault suite (issue 11): what walign promises when its results directory is hostile, shared or
broken, tried with real `python main.py` processes wherever the fault is real. A checkpoint is
data, never code: a pickle that would run a command is set aside unrun, and no file is read or
written through a symbolic link out of the run directory. One process owns a run: simultaneous
launches, overlapping sweeps and a later launch train each run once (one metrics line per epoch),
the others say `already running (host, pid, since ...)` and exit 0; a claim left by a killed run,
an abandoned node or the same SLURM job's earlier try is taken over with a line saying so. State
files that parse but are wrong (a summary.json of `[1,2]`, a checkpoint that is not a dict) are
one "unreadable"/"not resuming" line each and the run is done again, never a wedged sweep. Every
bad input is one line on stderr, exit 2, nothing written anywhere. A full disk, Ctrl-C and a run
that fails inside a sweep end in one line (the sweep in a tally and a non-zero exit), keep the
last good checkpoint, leave no temporary files, and a relaunch resumes to a complete run.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch
import yaml

from walign import checkpoint, claim

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "main.py")
FAST = ["width=4", "progress=lines", "device=cpu", "eval_test=false"]
HOST = socket.gethostname()
EPOCH_LINE = re.compile(r"\] epoch (\d+)/(\d+) ")
TEMPORARY = re.compile(r"\.tmp|walign-probe|\.stale-")  # walign's temporary names (runs.write_atomic, claim)


# ----------------------------------------------------------------------------- helpers
def environment(**extra) -> dict:
    """The test's environment without SLURM's variables (a test run inside a SLURM job must not
    look like a requeue), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _as_from_a_terminal():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # so Ctrl-C means KeyboardInterrupt, as in a shell


def launch(cwd: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start `python main.py ARGS` in ``cwd`` (a stray .hydra or outputs folder would land there)."""
    return subprocess.Popen([sys.executable, MAIN, *args], cwd=cwd, env=env or environment(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_as_from_a_terminal)


def finish(proc: subprocess.Popen, timeout: float = 300, before: str = "") -> tuple[str, str]:
    """Wait for ``proc``; (stdout, stderr), ``before`` being stdout already read."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish in {timeout}s:\n{before + out}\n{err}")
    return before + out, err


def walign(cwd: Path, *args: str, env: dict | None = None, timeout: float = 300) -> tuple[int, str, str]:
    proc = launch(cwd, *args, env=env)
    out, err = finish(proc, timeout)
    return proc.returncode, out, err


def read_until(proc: subprocess.Popen, pattern: str, timeout: float = 300) -> str:
    """Read ``proc``'s stdout up to the first line matching ``pattern``; the text read so far."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    seen = ""
    try:
        for line in iter(proc.stdout.readline, ""):
            seen += line
            if re.search(pattern, line):
                return seen
    finally:
        watchdog.cancel()
    pytest.fail(f"{proc.args} never printed {pattern!r}:\n{seen}\n{proc.stderr.read()}")


def wait_for(condition, timeout: float = 300, what: str = "") -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def spec_of(results: Path, *overrides: str, rule: str = "align_ada"):
    """The RunSpec `python main.py rule=RULE OVERRIDES results_dir=RESULTS` builds on the embedded
    data (the overrides are plain `key=value`s)."""
    from omegaconf import OmegaConf

    from walign.configs import rule_node
    from walign.datasets import DATASETS
    from walign.spec import RunSpec
    cfg = OmegaConf.load(ROOT / "conf" / "config.yaml")
    cfg.dataset = OmegaConf.create(DATASETS["embedded"].node())
    cfg.rule = OmegaConf.create(rule_node(rule))
    del cfg["defaults"], cfg["hydra"]
    for item in overrides:
        key, _, value = item.lstrip("+").partition("=")
        OmegaConf.update(cfg, key, yaml.safe_load(value))
    cfg.results_dir = str(results)
    return RunSpec.from_config(cfg)


def epochs(directory: Path) -> list[int]:
    """The epoch of every line of the run's metrics.jsonl, in file order."""
    return [json.loads(line)["epoch"] for line in (directory / "metrics.jsonl").read_text().splitlines()]


def status(directory: Path) -> str:
    return json.loads((directory / "summary.json").read_text())["status"]


def assert_clean(out: str, err: str) -> None:
    assert "Traceback" not in out + err, out + err
    assert "KeyboardInterrupt" not in out + err, out + err


def temporary_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMPORARY.search(p.name)]


def mount_tmpfs(where: Path, options: str) -> None:
    """Mount a tmpfs at ``where``; skip the test (with the reason) where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here to make a small or read-only file system")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")


def unmount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


class Payload:
    """What an attacker would plant: unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


# ----------------------------------------------------------------------------- 1. untrusted checkpoints
def test_untrusted_checkpoint_pickle_never_runs_and_is_set_aside(tmp_path):
    """A crafted checkpoint.pt (the run's own identity, plus an object whose unpickling runs a
    shell command) planted in an unfinished run's directory: the relaunch does not run it, moves it
    to checkpoint.pt.bad-<time> with one line saying why, and trains the run from epoch 1."""
    results, marker = tmp_path / "results", tmp_path / "PWNED"
    args = [*FAST, "epochs=2", f"results_dir={results}"]
    spec = spec_of(results, *args)
    directory = spec.run_directory()
    directory.mkdir(parents=True)
    planted = directory / checkpoint.CHECKPOINT
    torch.save({"format": checkpoint.FORMAT, "identity": spec.identity(), "epoch": 1,
                "records": [{"epoch": 1}], "rule": Payload(marker)}, planted)
    torch.load(planted, weights_only=False)  # the payload is live: a trusting loader runs it
    assert marker.exists()
    marker.unlink()
    (directory / "metrics.jsonl").write_text('{"epoch": 1}\n')
    planted_bytes = planted.read_bytes()

    code, out, err = walign(tmp_path, *args)
    assert code == 0, out + err
    assert_clean(out, err)
    assert not marker.exists(), "the checkpoint's pickle ran a command"
    (aside,) = directory.glob("checkpoint.pt.bad-*")
    assert re.fullmatch(r"checkpoint\.pt\.bad-\d{8}-\d{6}(-\d+)?", aside.name)
    assert aside.read_bytes() == planted_bytes  # kept for whoever wants to look at it, unchanged
    why = [line for line in out.splitlines() if "not resuming" in line]
    assert len(why) == 1 and "unreadable" in why[0] and aside.name in why[0] and str(directory) in why[0], out
    assert "starting from epoch 1" in why[0]
    assert [int(e) for e, _ in EPOCH_LINE.findall(out)] == [1, 2]
    assert epochs(directory) == [1, 2] and status(directory) == "complete"
    assert f"-> {directory}" in out


def test_untrusted_symlinks_are_never_followed_out_of_the_run_directory(tmp_path):
    """checkpoint.pt, summary.json, metrics.jsonl and config.yaml planted as symbolic links to files
    outside the run directory (the summary a valid 'complete' one): none is read or written
    through. The summary link is one 'unreadable' line and the run is trained; the checkpoint link
    itself is set aside; every file outside keeps its bytes; the run's files are regular files."""
    results, outside = tmp_path / "results", tmp_path / "outside"
    outside.mkdir()
    args = [*FAST, "epochs=2", f"results_dir={results}"]
    spec = spec_of(results, *args)
    directory = spec.run_directory()
    directory.mkdir(parents=True)
    summary = {**spec.identity(), "status": "complete", "epochs_done": 2, "best_val_acc": 0.99,
               "run_dir": str(directory)}
    targets = {"summary.json": json.dumps(summary), "metrics.jsonl": '{"epoch": 1}\n{"epoch": 2}\n',
               "config.yaml": "width: 4\n", checkpoint.CHECKPOINT: "not yours\n"}
    for name, text in targets.items():
        (outside / name).write_text(text)
        (directory / name).symlink_to(outside / name)

    code, out, err = walign(tmp_path, *args)
    assert code == 0, out + err
    assert_clean(out, err)
    for name, text in targets.items():
        assert (outside / name).read_text() == text, f"{name} was written through its link"
    unreadable = [line for line in out.splitlines() if line.startswith("unreadable:")]
    assert len(unreadable) == 1, out
    assert re.fullmatch(re.escape(f"unreadable: {directory / 'summary.json'}: a symbolic link to "
                                  f"{outside / 'summary.json'} (not followed); moved it to summary.json.bad-")
                        + r"\d{8}-\d{6}(-\d+)?, running it again", unreadable[0]), unreadable[0]
    (moved,) = directory.glob("summary.json.bad-*")
    assert moved.is_symlink() and Path(os.readlink(moved)) == outside / "summary.json"  # the link itself
    assert "already complete" not in out
    (aside,) = directory.glob("checkpoint.pt.bad-*")
    assert aside.is_symlink() and Path(os.readlink(aside)) == outside / checkpoint.CHECKPOINT
    assert "symbolic link" in next(line for line in out.splitlines() if "not resuming" in line)
    for name in ("summary.json", "metrics.jsonl", "config.yaml"):
        assert (directory / name).is_file() and not (directory / name).is_symlink(), name
    assert epochs(directory) == [1, 2] and status(directory) == "complete"


# ----------------------------------------------------------------------------- 2. one writer per run
ALREADY_RUNNING = r"already running \({host}, pid {pid}(, SLURM job [^,]+)?, since [^)]+\): {directory}"


def test_concurrent_launch_trains_the_run_once(tmp_path):
    """The same command launched twice at once, and a third time while the run is under way:
    one process trains it; the others print `already running (host, pid, since ...)` naming the
    trainer and exit 0 without writing; metrics.jsonl lists epochs 1..E once each."""
    results = tmp_path / "results"
    args = [*FAST, "epochs=3", f"results_dir={results}"]
    directory = spec_of(results, *args).run_directory()
    first, second = launch(tmp_path, *args), launch(tmp_path, *args)
    wait_for(lambda: (directory / checkpoint.CHECKPOINT).exists(), what="a first epoch")
    holder = json.loads((directory / claim.CLAIM).read_text())
    trainer = {first.pid: first, second.pid: second}[holder["pid"]]
    os.kill(trainer.pid, signal.SIGSTOP)  # hold the trainer mid-run while a later launch comes in
    try:
        before = (directory / "metrics.jsonl").read_bytes()
        code, later, err = walign(tmp_path, *args)
        assert (directory / "metrics.jsonl").read_bytes() == before  # the later launch wrote nothing
    finally:
        os.kill(trainer.pid, signal.SIGCONT)
    assert code == 0 and err == "", later + err
    running = ALREADY_RUNNING.format(host=re.escape(HOST), pid=trainer.pid, directory=re.escape(str(directory)))
    assert re.fullmatch(running + r"\n", later), later

    outputs = {}
    for proc in (first, second):
        outputs[proc.pid] = finish(proc)
        assert proc.returncode == 0, outputs[proc.pid]
        assert_clean(*outputs[proc.pid])
    loser = outputs[(set(outputs) - {trainer.pid}).pop()][0]
    assert not EPOCH_LINE.search(loser), loser
    assert re.search(running, loser) or f"already complete: {directory}" in loser, loser
    assert [int(e) for e, _ in EPOCH_LINE.findall(outputs[trainer.pid][0])] == [1, 2, 3]
    assert epochs(directory) == [1, 2, 3] and status(directory) == "complete"
    assert not (directory / claim.CLAIM).exists()  # released at the end


def test_concurrent_sweeps_train_every_run_once(tmp_path):
    """Two overlapping `-m` sweeps of one grid: the second skips the run the first is training
    (`1 running elsewhere`) and trains the others; the first then finds those `already complete`.
    Every run is trained once, with one metrics line per epoch."""
    results = tmp_path / "results"
    args = ["-m", "width=4,6", "seed=1", "epochs=2", "progress=lines", "device=cpu", "eval_test=false",
            f"results_dir={results}"]
    first = launch(tmp_path, *args)
    wait_for(lambda: any(results.rglob(claim.CLAIM)), what="the first sweep's first claim")
    os.kill(first.pid, signal.SIGSTOP)  # the first sweep is now mid-way through its first run
    try:
        code, out2, err2 = walign(tmp_path, *args)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out1, err1 = finish(first)
    assert code == 0 and first.returncode == 0, out1 + err1 + out2 + err2
    assert_clean(out1 + out2, err1 + err2)
    assert "walign sweep: 2 runs, 0 already finished (skipped), 1 running elsewhere (skipped), 1 to launch" in out2
    assert "walign sweep: 1 complete" in out2
    assert out1.count("already complete: ") == 1, out1
    assert "walign sweep: 2 complete" in out1

    directories = sorted(p.parent for p in results.rglob("summary.json"))
    assert len(directories) == 2
    for directory in directories:
        assert epochs(directory) == [1, 2] and status(directory) == "complete", directory
    assert len(EPOCH_LINE.findall(out1 + out2)) == 2 * 2  # each run's epochs trained once in all


# ----------------------------------------------------------------------------- 3. stale claims
def test_kill_leaves_a_claim_that_the_relaunch_takes_over(tmp_path):
    """SIGKILL a run after its first epoch: its claim.json stays behind with a dead pid. The same
    command on the same host takes the claim over with a line naming the dead holder and why,
    resumes and completes with one metrics line per epoch; the claim is released at the end."""
    results = tmp_path / "results"
    args = [*FAST, "epochs=2", f"results_dir={results}"]
    directory = spec_of(results, *args).run_directory()
    killed = launch(tmp_path, *args)
    read_until(killed, r"\] epoch 1/2")
    wait_for(lambda: (directory / checkpoint.CHECKPOINT).exists(), what="the first checkpoint")
    killed.kill()
    finish(killed)
    left = json.loads((directory / claim.CLAIM).read_text())
    assert (left["host"], left["pid"]) == (HOST, killed.pid)
    done = checkpoint.read(directory / checkpoint.CHECKPOINT)["epoch"]

    code, out, err = walign(tmp_path, *args)
    assert code == 0, out + err
    assert_clean(out, err)
    takeover = [line for line in out.splitlines() if "taking over the claim" in line]
    assert len(takeover) == 1, out
    assert takeover[0].startswith(f"{directory}: taking over the claim of {HOST}, pid {killed.pid}, since ")
    assert takeover[0].endswith(f": pid {killed.pid} no longer runs on {HOST}")
    assert f"{directory}: resuming after epoch {done}\n" in out
    assert epochs(directory) == [1, 2] and status(directory) == "complete"
    assert not (directory / claim.CLAIM).exists()


def plant_claim(directory: Path, age: float = 0.0, **holder) -> dict:
    """Write claim.json as another process would have, its heartbeat ``age`` seconds old."""
    directory.mkdir(parents=True, exist_ok=True)
    planted = {"host": HOST, "pid": os.getpid(), "slurm_job": None, "since": "2030-01-01 00:00:00 UTC",
               "token": uuid.uuid4().hex, **holder}
    path = directory / claim.CLAIM
    path.write_text(json.dumps(planted))
    os.utime(path, (time.time() - age, time.time() - age))
    return planted


def test_requeue_of_the_same_slurm_job_takes_over_its_claim_at_once(tmp_path):
    """A claim made by SLURM job 4242 whose holder still looks alive (its pid runs on this host,
    its heartbeat is fresh): the same command inside job 4242 (a requeue: SLURM_JOB_ID=4242) takes
    the claim over at once, with a line saying so, and completes the run. (Without the job id the
    claim stands: test_requeue_of_an_array_task_takes_over_only_its_own_claim.)"""
    results = tmp_path / "results"
    args = [*FAST, "epochs=1", f"results_dir={results}"]
    directory = spec_of(results, *args).run_directory()
    plant_claim(directory, slurm_job="4242")

    code, out, err = walign(tmp_path, *args, env=environment(SLURM_JOB_ID="4242"))
    assert code == 0, out + err
    assert_clean(out, err)
    assert f"{directory}: taking over the claim of {HOST}, pid {os.getpid()}, SLURM job 4242, since " in out
    assert out.count("taking over") == 1 and "SLURM job 4242 was requeued" in out
    assert epochs(directory) == [1] and status(directory) == "complete"
    assert not (directory / claim.CLAIM).exists()


def test_requeue_of_an_array_task_takes_over_only_its_own_claim(tmp_path, monkeypatch):
    """An array task's claim is its own: task 3 of array job 77 requeued takes over the claim of
    77_3 even though its holder's pid may still look alive; task 4 of the same array does not."""
    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    plant_claim(tmp_path, slurm_job="77_3")
    with pytest.raises(claim.AlreadyRunning, match="SLURM job 77_3"):
        claim.Claim(tmp_path, say=lambda *a, **k: None).acquire()

    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    said = []
    with claim.Claim(tmp_path, say=lambda line, **k: said.append(line)):
        mine = json.loads((tmp_path / claim.CLAIM).read_text())
        assert (mine["pid"], mine["slurm_job"]) == (os.getpid(), "77_3")
    assert len(said) == 1 and said[0].endswith("SLURM job 77_3 was requeued"), said
    assert not (tmp_path / claim.CLAIM).exists()


def test_abandoned_claim_is_taken_over_after_its_heartbeat_stops(tmp_path):
    """A claim from another node (its pid cannot be checked from here) stands while its heartbeat
    is fresh and is taken over, with a line saying so, once it is older than STALE_AFTER."""
    plant_claim(tmp_path, host="node-elsewhere", pid=12345, age=claim.STALE_AFTER / 2)
    with pytest.raises(claim.AlreadyRunning, match=r"node-elsewhere, pid 12345, since"):
        claim.Claim(tmp_path, say=lambda *a, **k: None).acquire()

    plant_claim(tmp_path, host="node-elsewhere", pid=12345, age=claim.STALE_AFTER + 120)
    said = []
    with claim.Claim(tmp_path, say=lambda line, **k: said.append(line)):
        assert json.loads((tmp_path / claim.CLAIM).read_text())["host"] == HOST
    assert len(said) == 1 and "node-elsewhere, pid 12345" in said[0] and "no heartbeat for 12 minutes" in said[0]


def test_live_claim_keeps_its_heartbeat_fresh(tmp_path, monkeypatch):
    """While a run holds its claim, a background thread touches claim.json, so a long run on a
    healthy node is never mistaken for an abandoned one."""
    monkeypatch.setattr(claim, "HEARTBEAT", 0.05)
    with claim.Claim(tmp_path):
        path = tmp_path / claim.CLAIM
        old = time.time() - claim.STALE_AFTER - 60
        os.utime(path, (old, old))
        wait_for(lambda: path.stat().st_mtime > time.time() - 5, timeout=10, what="a heartbeat")
        assert claim.stale_reason(*claim._read(path), {"host": "another-node", "slurm_job": None}) is None


# ----------------------------------------------------------------------------- 4. state files
@pytest.fixture(scope="module")
def damaged_sweep(tmp_path_factory):
    """A `-m seed=1,2,3,4` grid whose runs hold state files that parse but are wrong: summary.json
    `[1,2]` (seed 1) and `{"status": "complete"}` (seed 2); checkpoint.pt a valid torch file
    holding a list (seed 3) and a dict of this run lacking the training state (seed 4)."""
    tmp = tmp_path_factory.mktemp("damaged")
    results = tmp / "results"
    args = ["epochs=1", "width=4", "progress=lines", "device=cpu", "eval_test=false", f"results_dir={results}"]
    dirs = {seed: spec_of(results, *args, f"seed={seed}").run_directory() for seed in (1, 2, 3, 4)}
    for directory in dirs.values():
        directory.mkdir(parents=True)
    (dirs[1] / "summary.json").write_text("[1, 2]\n")
    (dirs[2] / "summary.json").write_text('{"status": "complete"}\n')
    torch.save([1, 2], dirs[3] / checkpoint.CHECKPOINT)
    torch.save({"format": checkpoint.FORMAT, "identity": spec_of(results, *args, "seed=4").identity(),
                "epoch": 1, "records": [{"epoch": 1}]}, dirs[4] / checkpoint.CHECKPOINT)
    (dirs[4] / "metrics.jsonl").write_text('{"epoch": 1}\n')
    code, out, err = walign(tmp, "-m", "seed=1,2,3,4", *args)
    return {"code": code, "out": out, "err": err, "dirs": dirs, "results": results, "tmp": tmp, "args": args}


def test_state_files_that_parse_but_are_wrong_do_not_wedge_a_sweep(damaged_sweep):
    """The sweep plans, runs all four runs and exits 0, without a traceback."""
    out, err = damaged_sweep["out"], damaged_sweep["err"]
    assert damaged_sweep["code"] == 0, out + err
    assert_clean(out, err)
    assert "walign sweep: 4 runs, 0 already finished (skipped), 4 to launch" in out
    assert "walign sweep: 4 complete" in out
    for directory in damaged_sweep["dirs"].values():
        assert epochs(directory) == [1] and status(directory) == "complete", directory


@pytest.mark.parametrize("seed, reason", [(1, "holds a JSON list, not an object"),
                                          (2, "lacks dataset, rule, width, lr, seed, epochs, epochs_done")])
def test_unreadable_summary_is_one_line_and_the_run_is_rerun(damaged_sweep, seed, reason):
    path = damaged_sweep["dirs"][seed] / "summary.json"
    lines = [line for line in damaged_sweep["out"].splitlines() if str(path) in line and "unreadable" in line]
    assert len(lines) == 1, damaged_sweep["out"]
    assert re.fullmatch(re.escape(f"unreadable: {path}: {reason}; moved it to summary.json.bad-")
                        + r"\d{8}-\d{6}(-\d+)?, running it again", lines[0]), lines[0]
    assert json.loads(path.read_text())["seed"] == seed  # rewritten by the rerun
    (moved,) = path.parent.glob("summary.json.bad-*")  # the bad file kept for whoever wants to look
    assert json.loads(moved.read_text()) == [[1, 2], {"status": "complete"}][seed - 1]


@pytest.mark.parametrize("seed, reason", [(3, "holds a list, not a checkpoint"),
                                          (4, "does not fit this run (KeyError: missing 'rule')")])
def test_checkpoint_that_does_not_restore_is_set_aside_and_the_run_starts_over(damaged_sweep, seed, reason):
    """A checkpoint that loads but cannot be resumed from is renamed aside (so it can never fail the
    run again) with one line saying why, and the run trains from epoch 1."""
    directory = damaged_sweep["dirs"][seed]
    lines = [line for line in damaged_sweep["out"].splitlines() if line.startswith(f"{directory}: not resuming")]
    assert len(lines) == 1, damaged_sweep["out"]
    assert reason in lines[0] and "starting from epoch 1" in lines[0], lines[0]
    (aside,) = directory.glob("checkpoint.pt.bad-*")
    assert aside.name in lines[0]
    assert not (directory / checkpoint.CHECKPOINT).exists()


def test_already_complete_names_where_the_run_is_now(damaged_sweep, tmp_path):
    """A finished run directory copied to another results_dir: relaunching there prints that
    directory, not the run_dir stored in the copied summary, and changes nothing."""
    old = damaged_sweep["dirs"][1]
    moved = tmp_path / "moved"
    copy = moved / old.relative_to(damaged_sweep["results"])
    shutil.copytree(old, copy)
    assert json.loads((copy / "summary.json").read_text())["run_dir"] == str(old)
    before = {p.name: p.read_bytes() for p in copy.iterdir()}
    args = [a for a in damaged_sweep["args"] if not a.startswith("results_dir=")]
    code, out, err = walign(tmp_path, *args, "seed=1", f"results_dir={moved}")
    assert code == 0 and err == "", out + err
    assert out.splitlines()[0] == f"already complete: {copy}", out
    assert str(old) not in out
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


# ----------------------------------------------------------------------------- 5. bad input
BAD_INPUT = {  # id: (overrides, words the one line must contain)
    "lr-inf": (["lr=inf"], ["lr", "inf"]),
    "seed-too-big": (["seed=99999999999"], ["seed", "99999999999"]),
    "device-mps": (["device=mps"], ["mps"]),
    "device-cpu-junk": (["device=cpu:junk"], ["cpu:junk"]),
    "device-cuda-without-gpu": (["device=cuda"], ["cuda", "not available"]),
    "eval-test-maybe": (["eval_test=maybe"], ["eval_test", "maybe"]),
    "option-normal-lacks": (["rule=normal", "+rule.same_step=true"], ["normal", "same_step"]),
    "option-not-for-cnn": (["rule=align_ada", "rule.same_step=true"], ["align_ada", "same_step"]),
    "dfa-projection-bogus": (["rule=dfa", "rule.projection=bogus"], ["projection", "bogus"]),
    "results-dir-empty": (["results_dir="], ["results_dir", "empty"]),
    "results-dir-a-file": (["results_dir={cwd}/a_file"], ["{cwd}/a_file", "file"]),
    "results-dir-unwritable": (["results_dir={cwd}/locked/results"], ["{cwd}/locked", "not writable"]),
    "results-dir-read-only-mount": (["results_dir={cwd}/ro"], ["{cwd}/ro", "Read-only file system"]),
    # issue 19: inputs that slipped through the first round
    "slurm-without-m": (["launcher=slurm"], ["launcher=slurm", "add -m"]),
    "score-epochs-beyond-the-run": (["task=alignment", "rule.score_epochs=[5]"], ["score_epochs", "5"]),
    "score-epochs-negative": (["task=alignment", "rule.score_epochs=[0,-3]"], ["score_epochs"]),
    "score-epochs-empty": (["task=alignment", "rule.score_epochs=[]"], ["score_epochs", "empty"]),
    "iterations-zero": (["task=alignment", "rule.iterations=0"], ["iterations", "0"]),
    "probes-negative": (["task=alignment", "rule.probes=-1"], ["probes", "-1"]),
    "cifar10-not-there": (["dataset=cifar10", "dataset.root={cwd}/nodata"], ["CIFAR-10", "{cwd}/nodata"]),
    "cifar10-download-fails": (["dataset=cifar10", "dataset.root={cwd}/nodata", "dataset.download=true"],
                               ["{cwd}/nodata"]),
    "flag-config-name": (["-cn", "config"], ["--config-name"]),
    "flag-run-unwritable": (["--run", "results_dir=/proc/walign-x"], ["/proc/walign-x", "not writable"]),
    # issue 35: values no run can have, which trained (or overflowed inside torch) before
    "width-31-digits": (["width=1000000000000000000000000000000"], ["width", "1..1048576"]),
    "width-beyond-memory": (["width=100000"], ["width 100000", "GiB", "memory"]),
    "lr-1e-300": (["lr=1e-300"], ["lr", "1e-12..1e+06", "1e-300"]),
}
# refused sweeps: the same promise with -m (every run is checked before Hydra writes its sweep folder)
BAD_SWEEPS = {
    "sweep-lr-inf": (["-m", "lr=inf,1"], ["lr", "inf"]),
    "sweep-results-dir-a-file": (["-m", "results_dir={cwd}/a_file"], ["{cwd}/a_file"]),
    "sweep-results-dir-empty": (["-m", "results_dir="], ["results_dir", "empty"]),
    "sweep-device-mps": (["-m", "device=mps", "width=4,6"], ["mps"]),
    "sweep-batch-size-beyond-the-data": (["-m", "batch_size=5000,50"], ["batch_size 5000", "1500"]),
    "sweep-width-31-digits": (["-m", "width=4,1000000000000000000000000000000"], ["width", "1..1048576"]),
    "sweep-lr-1e-300": (["-m", "lr=5,1e-300"], ["lr", "1e-300"]),
}


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """Every bad command, launched all at once (each in a working directory of its own, with its
    own results_dir below it), and what each left behind."""
    base = tmp_path_factory.mktemp("refused")
    root_hydra = Path("/.hydra")
    root_hydra_before = root_hydra.exists()
    procs, setup, mounts = {}, {}, []
    for name, (args, _) in {**BAD_INPUT, **BAD_SWEEPS}.items():
        cwd = base / name
        cwd.mkdir()
        (cwd / "a_file").write_text("not a directory\n")
        (cwd / "locked").mkdir()
        (cwd / "locked").chmod(0o555)
        if name == "results-dir-read-only-mount":
            (cwd / "ro").mkdir()
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(cwd / "ro")],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                setup[name] = f"cannot mount a read-only tmpfs here: {done.stderr.strip()}"
                continue
            mounts.append(cwd / "ro")
        if name == "results-dir-unwritable" and os.geteuid() == 0:
            setup[name] = "running as root: chmod 555 does not stop root from writing"
            continue
        if name == "device-cuda-without-gpu" and torch.cuda.is_available():
            setup[name] = "a GPU is visible here"
            continue
        values = {"width": "4", "epochs": "1", "progress": "none", "device": "cpu", "eval_test": "false",
                  "results_dir": str(cwd / "results")}
        for arg in (a.format(cwd=cwd) for a in args if not a.startswith("-") and a != "config"):
            key, _, value = arg.partition("=")
            values[key] = value
        flags = [a for a in args if a.startswith("-") or a == "config"]  # (-cn's value goes with it)
        procs[name] = (cwd, launch(cwd, *flags, *[f"{k}={v}" for k, v in values.items()]))
    outcome = {}
    try:
        for name, (cwd, proc) in procs.items():
            out, err = finish(proc, timeout=300)
            left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
            outcome[name] = {"code": proc.returncode, "out": out, "err": err, "cwd": cwd, "left": left}
    finally:
        for where in mounts:
            unmount(where)
        if not root_hydra_before and root_hydra.exists():  # an empty results_dir wrote /.hydra: clean up
            for name, folder in (("results-dir-empty", "2"), ("sweep-results-dir-empty", "multirun")):
                # Hydra's folders there: <time> (begins with the year) for a run, multirun/ for a sweep
                found = sorted(str(p) for p in root_hydra.glob(f"{folder}*"))
                if found and name in outcome:
                    outcome[name]["left"] += found
            shutil.rmtree(root_hydra, ignore_errors=True)
    return outcome, setup


def check_refused(refused, name, table):
    outcome, setup = refused
    if name in setup:
        pytest.skip(setup[name])
    result = outcome[name]
    cwd = result["cwd"]
    assert_clean(result["out"], result["err"])
    lines = result["err"].splitlines()
    assert len(lines) == 1, result["err"]
    for word in table[name][1]:
        assert word.format(cwd=cwd) in lines[0], lines[0]
    assert result["code"] == 2, result
    assert result["out"] == "", result["out"]
    assert result["left"] == ["a_file", "locked"] + (["ro"] if name == "results-dir-read-only-mount" else []), \
        f"a refused command left files behind: {result['left']}"


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_refused_in_one_line_with_nothing_written(refused, name):
    """Each bad input of the issue: one line on stderr naming the value, exit 2, no traceback,
    and nothing on disk (no run directory, no .hydra or outputs folder in the working directory
    or under results_dir)."""
    check_refused(refused, name, BAD_INPUT)


@pytest.mark.parametrize("name", list(BAD_SWEEPS))
def test_bad_sweep_is_refused_in_one_line_with_nothing_written(refused, name):
    check_refused(refused, name, BAD_SWEEPS)


# ----------------------------------------------------------------------------- 6. faults end cleanly
def test_full_disk_ends_in_one_line_and_the_relaunch_resumes(tmp_path):
    """results_dir on a small tmpfs that fills up mid-run: one line naming the file and the error,
    a non-zero exit, no temporary file left, the last good checkpoint kept byte for byte; with
    space freed, the same command resumes from it and completes, one metrics line per epoch."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=4m")
    try:
        args = [*FAST, "epochs=2", f"results_dir={disk}"]
        directory = spec_of(disk, *args).run_directory()
        proc = launch(tmp_path, *args)
        seen = read_until(proc, r"\] epoch 1/2")
        wait_for(lambda: (directory / checkpoint.CHECKPOINT).exists(), what="the first checkpoint")
        good = (directory / checkpoint.CHECKPOINT).read_bytes()
        filler = disk / "filler"
        with open(filler, "wb") as f:
            with pytest.raises(OSError, match="No space left"):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        out, err = finish(proc, before=seen)
        assert proc.returncode not in (0, 2) and proc.returncode > 0, out + err
        assert_clean(out, err)
        lines = err.splitlines()
        assert len(lines) == 1, err
        assert str(directory / checkpoint.CHECKPOINT) in lines[0] and "No space left on device" in lines[0]
        assert temporary_files(disk) == [], "a temporary file was left behind"
        assert (directory / checkpoint.CHECKPOINT).read_bytes() == good
        assert checkpoint.read(directory / checkpoint.CHECKPOINT)["epoch"] == 1
        assert not (directory / "summary.json").exists() and not (directory / "error.log").exists()
        assert not (directory / claim.CLAIM).exists()

        filler.unlink()
        code, out, err = walign(tmp_path, *args)
        assert code == 0, out + err
        assert_clean(out, err)
        assert f"{directory}: resuming after epoch 1" in out
        assert [int(e) for e, _ in EPOCH_LINE.findall(out)] == [2]
        assert epochs(directory) == [1, 2] and status(directory) == "complete"
        assert temporary_files(disk) == []
    finally:
        unmount(disk)


def test_ctrl_c_saves_mid_epoch_in_one_line_and_the_relaunch_resumes(tmp_path):
    """SIGINT (Ctrl-C) during epoch 2: the run saves its place and prints exactly `stopped:
    checkpoint saved in epoch E after step K; run the same command to resume`, no traceback.
    The relaunch continues from that step, writes one metrics line per epoch, and the interrupted
    epoch's `seconds` is the whole epoch's time: the part before the stop plus the part after."""
    results = tmp_path / "results"
    args = [*FAST, "epochs=2", f"results_dir={results}"]
    directory = spec_of(results, *args).run_directory()
    proc = launch(tmp_path, *args)
    seen = read_until(proc, r"\] epoch 1/2")
    # No wait needed: a stop is acted on only after a training step, so this one lands inside
    # epoch 2 (after its first step at the earliest; asserted below: step > 0).
    proc.send_signal(signal.SIGINT)
    out, err = finish(proc, before=seen)
    assert proc.returncode == 130, out + err
    assert_clean(out, err)
    stopped = re.findall(r"stopped: checkpoint saved in epoch (\d+) after step (\d+); "
                         r"run the same command to resume", out)
    assert len(stopped) == 1 and f"{directory}: stopped: " in out, out + err
    epoch, step = map(int, stopped[0])
    state = checkpoint.read(directory / checkpoint.CHECKPOINT)
    assert state["epoch"] + 1 == epoch and state["within_epoch"]["step"] == step > 0
    assert not (directory / "summary.json").exists() and not (directory / claim.CLAIM).exists()

    # mark the part of the epoch before the stop as 1000 s, so the sum is unmistakable
    state["within_epoch"]["seconds"] = 1000.0
    torch.save(state, directory / checkpoint.CHECKPOINT)
    started = time.time()
    code, out, err = walign(tmp_path, *args)
    elapsed = time.time() - started
    assert code == 0, out + err
    assert_clean(out, err)
    assert f"resuming after epoch {epoch - 1}, step {step}" in out
    assert epochs(directory) == [1, 2] and status(directory) == "complete"
    records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert 1000.0 < records[epoch - 1]["seconds"] < 1000.0 + elapsed
    assert all(r["seconds"] < elapsed for r in records if r["epoch"] != epoch)


CRASHING_RULE = '''
from walign.nets import initialize
from walign.rules import Rule, mse, register


@register("crashing", "cnn")
class Crashing(Rule):
    """Backprop, except that a network wider than 4 channels runs out of memory, as on a small GPU."""

    @classmethod
    def create(cls, net, seed):
        initialize(net, seed)
        return cls(net)

    def pseudo_gradients(self, x, target):
        if self.net.spec.width > 4:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.exact(mse(self.net(x), target))
'''


def test_sweep_with_a_failed_run_exits_nonzero_after_a_summary_line(tmp_path, monkeypatch):
    """A `-m` sweep in which one run fails (a rule that runs out of memory at width 6) finishes the
    other runs, ends with `walign sweep: 2 complete, 1 failed: <run dir>` and exits non-zero; the
    failed run has its error.log, written in the run directory even where a link pointed out."""
    (tmp_path / "crashing.py").write_text(CRASHING_RULE)
    results, outside = tmp_path / "results", tmp_path / "outside.log"
    args = ["+rule_module=crashing", "rule=crashing", "epochs=1", "progress=lines", "device=cpu",
            "eval_test=false", f"results_dir={results}"]
    from walign.rules import RULES
    with monkeypatch.context() as patch:  # the rule known here just long enough to name its directory
        patch.setitem(RULES, "crashing", {})
        exec(compile(CRASHING_RULE, "crashing.py", "exec"), {})
        failing = spec_of(results, "width=6", *args[2:], rule="crashing").run_directory()
    assert "crashing" not in RULES
    failing.mkdir(parents=True)
    outside.write_text("someone else's log\n")
    (failing / "error.log").symlink_to(outside)

    code, out, err = walign(tmp_path, "-m", "width=4,6,3", *args)
    assert code != 0, out + err
    assert_clean(out, err)
    assert out.splitlines()[-1] == f"walign sweep: 2 complete, 1 failed: {failing}", out
    assert "walign: run failed: RuntimeError: CUDA out of memory" in err
    assert status(failing) == "failed"
    assert outside.read_text() == "someone else's log\n"
    log = failing / "error.log"
    assert log.is_file() and not log.is_symlink() and "Traceback" in log.read_text()
    done = [p.parent for p in results.rglob("summary.json") if p.parent != failing]
    assert len(done) == 2 and all(status(d) == "complete" and epochs(d) == [1] for d in done)


def test_sweep_with_a_run_that_cannot_write_goes_on_and_exits_nonzero(tmp_path):
    """One run of a `-m` sweep cannot write anything (its directory is a read-only mount): that
    run is one line, the sweep runs the others, prints its tally naming the failed run, and
    exits non-zero."""
    results = tmp_path / "results"
    args = ["epochs=1", "width=4", "progress=lines", "device=cpu", "eval_test=false", f"results_dir={results}"]
    blocked = spec_of(results, *args, "seed=1").run_directory()
    mount_tmpfs(blocked, "ro,size=1m")
    try:
        code, out, err = walign(tmp_path, "-m", "seed=1,2", *args)
    finally:
        unmount(blocked)
    assert code != 0, out + err
    assert_clean(out, err)
    assert [line for line in err.splitlines() if "Read-only file system" in line] and len(err.splitlines()) == 1, err
    assert out.splitlines()[-1] == f"walign sweep: 1 complete, 1 failed: {blocked}", out
    (other,) = [p.parent for p in results.rglob("summary.json")]
    assert epochs(other) == [1] and status(other) == "complete"
