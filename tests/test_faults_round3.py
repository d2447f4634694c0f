"""Fault suite, third round (issue 35), with real `python main.py` processes: a live run is never
taken over on its own host, however old its heartbeat (a stopped process); the relaunch, the
sweep's scan, `walign status` and `walign-report` give one verdict on every damaged run
directory; the ranges a launch accepts are the ranges a summary is read back with; anything but a
file at a state file's name is moved aside with one line; the report writes outside the runs; and
the inputs that used to end in a traceback are one line, exit 2, nothing written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from walign import claim, limits, runs
from test_faults import (FAST, HOST, assert_clean, environment, epochs, finish, launch, plant_claim,
                         read_until, spec_of, status, walign)
from test_faults_round2 import claimant, results_of


def tool(cwd: Path, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed command ``name`` (walign, walign-report) of this environment."""
    return subprocess.run([str(Path(sys.executable).parent / name), *args], cwd=cwd, env=environment(),
                          capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- 1. a live holder keeps its claim
def test_a_stopped_run_is_not_taken_over_and_ends_as_if_undisturbed(tmp_path):
    """A real run stopped with SIGSTOP after its first epoch, its heartbeat an hour old (as after
    an hour stopped: the stopped process cannot touch it): a relaunch says it is running, with
    the heartbeat's age and "suspended?", exits 0 and trains nothing; `walign status` calls it
    running. After SIGCONT the run ends with every epoch once in metrics.jsonl and the numbers of
    a run that was never stopped."""
    results, undisturbed = tmp_path / "results", tmp_path / "undisturbed"
    args = [*FAST, "epochs=4", f"results_dir={results}"]
    directory = spec_of(results, *args).run_directory()
    first = launch(tmp_path, *args)
    seen = read_until(first, r"\] epoch 1/4 ")
    pid = claimant(directory)
    assert pid == first.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        hour_ago = time.time() - 3600
        assert 3600 > claim.STALE_AFTER
        os.utime(directory / claim.CLAIM, (hour_ago, hour_ago))
        before = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}

        code, out, err = walign(tmp_path, *args)
        assert code == 0 and err == "", out + err
        assert re.fullmatch(rf"already running \({re.escape(HOST)}, pid {pid}, since [^)]+, heartbeat 36\d\d s ago: "
                            rf"alive but silent, suspended\?\): {re.escape(str(directory))}\n", out), out
        assert {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()} == before  # trained nothing

        shown = tool(tmp_path, "walign", "status", str(results))
        assert shown.returncode == 0, shown.stderr
        assert "0 failed, 1 running, 0 queued" in shown.stdout
        assert f"pid {pid}" in shown.stdout and "suspended?" in shown.stdout
    finally:
        os.kill(pid, signal.SIGCONT)
    out, err = finish(first, before=seen)
    assert first.returncode == 0, out + err
    assert_clean(out, err)
    assert epochs(directory) == [1, 2, 3, 4] and status(directory) == "complete"

    code, out, err = walign(tmp_path, *FAST, "epochs=4", f"results_dir={undisturbed}")
    assert code == 0, out + err
    assert results_of(directory) == results_of(spec_of(undisturbed, *args).run_directory())


def test_a_claim_whose_pid_now_belongs_to_another_process_is_taken_over(tmp_path):
    """A claim on this host naming a live pid that started at another time (the run's process
    ended and the pid was reused): taken over at once, with a line saying so. The same claim
    with the pid's real start time stands, however old its heartbeat."""
    directory = tmp_path / "run"
    started = claim.process_start(os.getpid())
    assert started is not None, "this test needs Linux's /proc"
    plant_claim(directory, age=3600, started=started)
    with pytest.raises(claim.AlreadyRunning, match=r"heartbeat 36\d\d s ago: alive but silent, suspended\?"):
        claim.Claim(directory, say=lambda *a, **k: None).acquire()

    plant_claim(directory, age=0, started=started + "0")
    said = []
    with claim.Claim(directory, say=lambda line, **k: said.append(line)):
        assert json.loads((directory / claim.CLAIM).read_text())["started"] == started  # ours now (same process)
    assert len(said) == 1 and f"pid {os.getpid()} on {HOST} is now another process" in said[0], said


# ----------------------------------------------------------------------------- 2. one verdict
DAMAGE = {  # seed: (what is done to the finished run, whether it still counts as finished)
    1: ("untouched", True),
    2: ("metrics.jsonl deleted", False),
    3: ("best_val_acc edited to 0.99", False),
    4: ("lr edited to 2", False),
    5: ("summary copied from seed 1", False),
    6: ("a directory at summary.json", False),
    7: ("a FIFO at summary.json", False),
    8: ("a directory at metrics.jsonl", False),
    9: ("a FIFO at metrics.jsonl", False),
    10: ("a directory at checkpoint.pt", True),
    11: ("a FIFO at claim.json", True),
    12: ("a directory at claim.json", True),
    13: ("status edited to failed", False),
}


def damage(directory: Path, what: str, dirs: dict) -> None:
    summary = directory / "summary.json"
    if what == "metrics.jsonl deleted":
        (directory / "metrics.jsonl").unlink()
    elif what.endswith("edited to 0.99"):
        summary.write_text(re.sub(r'"best_val_acc": [^,]+', '"best_val_acc": 0.99', summary.read_text()))
    elif what == "lr edited to 2":
        summary.write_text(summary.read_text().replace('"lr": 5.0', '"lr": 2.0'))
    elif what == "status edited to failed":
        summary.write_text(summary.read_text().replace('"status": "complete"', '"status": "failed"'))
    elif what == "summary copied from seed 1":
        shutil.copy(dirs[1] / "summary.json", summary)
    elif what != "untouched":
        kind, name = re.fullmatch(r"a (directory|FIFO) at (\S+)", what).groups()
        path = directory / name
        if path.exists():
            path.unlink()
        path.mkdir() if kind == "directory" else os.mkfifo(path)
        old = time.time() - 60  # left long ago (a claim younger than UNWRITTEN_GRACE may be being written)
        os.utime(path, (old, old))


def test_relaunch_sweep_status_and_report_give_one_verdict_on_every_damaged_run(tmp_path):
    """A 13-run sweep, finished, each run damaged in one way (or left alone). `walign status`
    and walign-report are asked first (they only read), then a relaunch of one damaged and one
    untouched run, then the whole sweep again: every reader counts as finished exactly the runs
    the others do, and the relaunched sweep trains exactly the others again."""
    results = tmp_path / "results"
    args = ["epochs=1", "width=4", "progress=none", "device=cpu", "eval_test=false", f"results_dir={results}"]
    seeds = ",".join(map(str, DAMAGE))
    code, out, err = walign(tmp_path, "-m", f"seed={seeds}", *args, timeout=900)
    assert code == 0, out + err
    dirs = {seed: spec_of(results, *args, f"seed={seed}").run_directory() for seed in DAMAGE}
    for seed, (what, _) in DAMAGE.items():
        damage(dirs[seed], what, dirs)
    finished = {seed for seed, (_, counts) in DAMAGE.items() if counts}
    rel = {seed: d.relative_to(results).as_posix() for seed, d in dirs.items()}

    # walign status: the finished ones complete, every other one failed with the reason
    shown = tool(tmp_path, "walign", "status", str(results))
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    total = shown.stdout.split("total:")[1]
    assert f"{len(finished)} complete, 0 diverged, {len(DAMAGE) - len(finished)} failed, 0 running" in total, total
    failing = {seed for seed in DAMAGE if f"  failed: {rel[seed]}: " in total}
    assert failing == set(DAMAGE) - finished, total

    # walign-report: uses the finished ones, lists each other one once
    report = tool(tmp_path, "walign-report", str(results), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "REPORT.md").read_text()
    used = {seed for seed in DAMAGE if re.search(rf"^- `{re.escape(rel[seed])}/summary.json`", text, re.M) is None
            and f"- `{rel[seed]}`" not in text.split("## Failed runs")[1].split("\n## ")[0]}
    assert used == finished, text
    assert f"Runs read: {len(finished) + 1} ({len(finished)} complete, 0 diverged, 1 failed)" in text

    # main.py's relaunch of single runs: an untouched run is found finished, a damaged one is redone
    untouched = (dirs[1] / "summary.json").read_bytes()
    code, out, err = walign(tmp_path, *args, "seed=1")
    assert code == 0 and err == "" and out.splitlines()[0] == f"already complete: {dirs[1]}", out + err
    assert (dirs[1] / "summary.json").read_bytes() == untouched
    code, out, err = walign(tmp_path, *args, "seed=3")
    assert code == 0, out + err
    assert re.match(rf"unreadable: {re.escape(str(dirs[3]))}/summary.json: says best_val_acc 0.99, but its "
                    rf"metrics.jsonl gives [\d.]+; moved it to summary.json.bad-\S+, running it again\n", out), out
    assert status(dirs[3]) == "complete"
    finished.add(3)

    # the sweep's scan: skips exactly the finished ones, and its relaunch trains the rest
    stamps = {seed: (dirs[seed] / "summary.json").stat().st_mtime_ns for seed in finished}
    code, out, err = walign(tmp_path, "-m", f"seed={seeds}", *args, timeout=900)
    assert code == 0, out + err
    assert_clean(out, err)
    assert out.splitlines()[0].startswith(f"walign sweep: {len(DAMAGE)} runs, {len(finished)} already finished "
                                          f"(skipped), {len(DAMAGE) - len(finished)} to launch, "), out
    assert out.splitlines()[-1] == f"walign sweep: {len(DAMAGE) - len(finished)} complete", out
    assert all((dirs[seed] / "summary.json").stat().st_mtime_ns == stamps[seed] for seed in finished)
    for seed in DAMAGE:
        assert status(dirs[seed]) == "complete" and epochs(dirs[seed]) == [1], DAMAGE[seed]
    assert results_of(dirs[4]) == results_of(spec_of(results, *args, "seed=4").run_directory())
    shown = tool(tmp_path, "walign", "status", str(results))
    assert f"{len(DAMAGE)} complete, 0 diverged, 0 failed" in shown.stdout.split("total:")[1]


# ----------------------------------------------------------------------------- 3. one set of limits
def launch_accepts(spec, **values) -> bool:
    from walign.errors import ConfigError
    try:
        dataclasses.replace(spec, **values).validate()
    except ConfigError:
        return False
    return True


def read_accepts(path: Path, **values) -> bool:
    summary = {"status": "complete", "dataset": "embedded", "rule": "normal", "width": 4, "lr": 5.0, "seed": 0,
               "epochs": 2, "epochs_done": 1, "batch_size": 50, **values}
    try:
        runs.check_summary(summary, path)
    except runs.Unreadable:
        return False
    return True


@pytest.mark.parametrize("key", ["width", "lr", "epochs", "seed", "batch_size"])
def test_what_a_launch_accepts_reads_back_and_what_reading_refuses_no_launch_accepts(tmp_path, key):
    """Each value at the bottom of its range, at the top (where nothing else bounds it: a width
    is also bounded by memory, a batch by the data) and just beyond either end: the launch's
    check and summary.json's reader agree."""
    spec = spec_of(tmp_path, "width=4", "epochs=2", rule="normal")
    low, high = limits.RANGES[key]
    beyond = (low - 1, high + 1) if key in limits.INTEGERS else (low / 2, high * 2)
    cases = [(low, True), (beyond[0], False), (beyond[1], False), (10**400, False)]
    if key not in ("width", "batch_size"):
        cases.append((high, True))
    for value, allowed in cases:
        assert launch_accepts(spec, **{key: value}) == allowed, (key, value)
        assert read_accepts(tmp_path / "summary.json", **{key: value}) == allowed, (key, value)
    assert not launch_accepts(spec, lr=1e-300) and not read_accepts(tmp_path / "summary.json", lr=1e-300)


# ----------------------------------------------------------------------------- 4. damaged state files
@pytest.mark.parametrize("kind", ["directory", "fifo", "link"])
def test_anything_but_a_file_at_metrics_or_the_claim_is_moved_aside_and_the_run_completes(tmp_path, kind):
    """A directory, a FIFO or a symbolic link at metrics.jsonl and at claim.json of an unfinished
    run: each is renamed to <name>.bad-<time> with one line, and the run completes."""
    results = tmp_path / "results"
    args = [*FAST, "epochs=1", f"results_dir={results}"]
    directory = spec_of(results, *args).run_directory()
    directory.mkdir(parents=True)
    for name in ("metrics.jsonl", claim.CLAIM):
        path = directory / name
        if kind == "directory":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to(tmp_path / "elsewhere")
        old = time.time() - 60
        os.utime(path, (old, old), follow_symlinks=False)
    code, out, err = walign(tmp_path, *args)
    assert code == 0 and err == "", out + err
    assert_clean(out, err)
    for name in ("metrics.jsonl", claim.CLAIM):
        (aside,) = directory.glob(f"{name}.bad-*")
        said = [line for line in out.splitlines() if f"moved it to {aside.name}" in line]
        assert len(said) == 1, out
    assert epochs(directory) == [1] and status(directory) == "complete"
    assert not (tmp_path / "elsewhere").exists()


# ----------------------------------------------------------------------------- 5. the report writes outside the runs
def test_the_report_refuses_an_out_inside_a_run_directory_or_through_a_link(tmp_path):
    results = tmp_path / "results"
    args = [*FAST, "epochs=1", f"results_dir={results}"]
    code, out, err = walign(tmp_path, *args)
    assert code == 0, out + err
    directory = spec_of(results, *args).run_directory()
    before = sorted(p.name for p in directory.iterdir())
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    for out_dir, words in ((directory, ["inside the run directory", str(directory)]),
                           (directory / "report", ["inside the run directory", str(directory)]),
                           (tmp_path / "link", ["symbolic link", str(tmp_path / "target")])):
        done = tool(tmp_path, "walign-report", str(results), "--out", str(out_dir))
        assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
        assert len(done.stderr.splitlines()) == 1 and all(w in done.stderr for w in words), done.stderr
    assert sorted(p.name for p in directory.iterdir()) == before
    assert list((tmp_path / "target").iterdir()) == []
    assert tool(tmp_path, "walign-report", str(results)).returncode == 0  # the default, results/report, is fine


# ----------------------------------------------------------------------------- 6. one line, exit 2, nothing written
BROKEN_PLUGIN = '''
from walign.datasets import DataShape, register
from walign.datasets.image import ImageDataSet


@register("broken")
class Broken(ImageDataSet):
    config = {"epochs": 1, "batch_size": 10, "lr": 1.0}

    @classmethod
    def shape(cls, options):
        return DataShape(train=100, val=10, test=10, channels=1, image_size=8, classes=2, arch="kmnist")

    @classmethod
    def load(cls, device):
        raise RuntimeError("reading the images\\ndecoder gave up at byte 12")
'''


@pytest.mark.parametrize("flags", [[], ["-m"]], ids=["run", "sweep"])
def test_a_data_set_plugin_whose_loading_raises_is_one_line(tmp_path, flags):
    """A data-set plugin whose load() raises: one line on stderr naming the data set, its module
    and the exception's last line, exit 2, no Hydra traceback, nothing left in the working
    directory or under results_dir (under -m the sweep's own bookkeeping is removed too)."""
    (tmp_path / "broken_data.py").write_text(BROKEN_PLUGIN)
    code, out, err = walign(tmp_path, *flags, "+dataset_module=broken_data", "dataset=broken", "width=4",
                            "progress=none", "device=cpu", "seed=1,2" if flags else "seed=1",
                            f"results_dir={tmp_path / 'results'}")
    assert code == 2, out + err
    assert_clean(out, err)
    assert "Error executing job" not in out + err
    assert err.splitlines() == ["walign: error: dataset broken (broken_data) failed to load: RuntimeError: decoder "
                                "gave up at byte 12"], err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["broken_data.py"]


@pytest.mark.parametrize("value", ["1e308", "1e400", "86401", "-1", "0"])
def test_a_watch_interval_beyond_a_day_is_one_line(tmp_path, value):
    (tmp_path / "results").mkdir()
    done = tool(tmp_path, "walign", "status", str(tmp_path / "results"), "--watch", value)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and "--watch" in done.stderr and "86400" in done.stderr, done.stderr
