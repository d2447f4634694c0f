"""The whole paper from one command (issue 36): `sweeps=paper` is the union of the 18 grids, each
distinct run once; `plan=true` prints its totals and writes nothing; the fast job composition
equals Hydra's; missing data is one line per data set, and `missing_data=skip` launches the rest;
every sweep file has a smoke grid that keeps every rule of its item."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from walign import grids

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "main.py")
ITEMS = [f"table{n}" for n in range(1, 11)] + [f"fig{n}" for n in (1, 3, 4, 5, 6, 7, 8, 9)]


def main_py(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, MAIN, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")}


def plan_rows(out: str) -> dict[str, list[int]]:
    """The plan's table: item -> [runs, finished, running, queued, to launch]."""
    rows = {}
    for line in out.splitlines():
        match = re.fullmatch(r"(Table \d+|Figure \d+|total \(distinct runs\))\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+"
                             r"[\d.]+\s+[\d.]+", line)
        if match:
            rows[match.group(1)] = [int(match.group(i)) for i in range(2, 7)]
    return rows


@pytest.fixture(scope="module")
def independent_union():
    """The distinct run directories of the 18 sweep files, composed file by file by walign.grids
    (its own composition path, not the sweeper's), and each file's own count."""
    per_item = {name: {spec.run_directory() for spec in grids.sweep_specs(ROOT / "sweeps" / f"{name}.yaml")}
                for name in ITEMS}
    return per_item, set().union(*per_item.values())


def test_the_plan_of_the_whole_paper_counts_the_union_of_the_grids_and_writes_nothing(tmp_path, independent_union):
    per_item, union = independent_union
    results = tmp_path / "results"
    results.mkdir()
    (results / "keep.txt").write_text("a file that was here before\n")
    before = tree(tmp_path)
    done = main_py(tmp_path, "-m", "sweeps=paper", "plan=true", f"results_dir={results}", "missing_data=skip",
                   "device=cuda")  # priced for GPUs (a plan checks no device)
    assert done.returncode == 0, done.stdout + done.stderr
    assert tree(tmp_path) == before, "the plan wrote something"
    rows = plan_rows(done.stdout)
    # grids.sweep_specs names directories under results/ (the config's default): compare counts
    assert rows["total (distinct runs)"] == [len(union), 0, 0, 0, len(union)], done.stdout
    for name in ITEMS:
        assert rows[grids.label([name])][0] == len(per_item[name]), name
    points = sum(len(grids.sweep_jobs(ROOT / "sweeps" / f"{name}.yaml")) for name in ITEMS)
    assert f"total: {len(union)} runs ({points} grid points), 0 already finished (skipped), {len(union)} to launch" \
        in done.stdout
    assert re.search(r"to launch, [\d.]+ EFLOP, about [\d.]+ GPU-hours$", done.stdout, re.M) and "tasks: " in done.stdout


def test_the_plan_counts_finished_runs_and_the_launch_prints_the_same_totals(tmp_path):
    """Table 8 at smoke scale (8 Add-task runs): the plan, then a launch that says the same
    totals, then a plan that finds them finished."""
    args = ["-m", "sweeps=table8", "scale=smoke", "device=cpu", "progress=none", f"results_dir={tmp_path / 'r'}"]
    plan = main_py(tmp_path, *args, "plan=true")
    assert plan.returncode == 0, plan.stderr
    total = next(line for line in plan.stdout.splitlines() if line.startswith("total: "))
    assert total.startswith("total: 8 runs, 0 already finished (skipped), 8 to launch, ")
    launch = main_py(tmp_path, *args)
    assert launch.returncode == 0, launch.stderr
    assert total.replace("total:", "walign sweep:") in launch.stdout.splitlines()
    again = main_py(tmp_path, *args, "plan=true")
    assert plan_rows(again.stdout)["Table 8"] == [8, 8, 0, 0, 0], again.stdout


def test_the_fast_job_composition_equals_hydras_own(tmp_path):
    """hydra_plugins/walign_hydra/job_configs.py against Hydra's full composition, on jobs of every
    sweep file at both scales, with values, additions and group choices from the command line."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict

    import walign.spec  # noqa: F401  (registers the rules' and data sets' config nodes)
    from hydra_plugins.walign_hydra.job_configs import JobConfigs

    def plain(cfg):
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
        return OmegaConf.to_yaml(cfg, resolve=True)

    extra = ["data_root=/d", "+dataset_module=x", "seed=7", "verify_md5.cifar10=false"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for scale in ("full", "smoke"):
            master = loader.load_configuration("config", ["sweeps=paper", f"scale={scale}", *extra],
                                               run_mode=RunMode.MULTIRUN)
            fast = JobConfigs(loader, master)
            for name in ITEMS:
                jobs = grids.sweep_jobs(ROOT / "sweeps" / f"{name}.yaml", scale)
                for job in (jobs[0], jobs[-1]):
                    overrides = [*job, "sweeps=paper", f"scale={scale}", *extra]
                    assert plain(fast.get(overrides)) == plain(loader.load_sweep_config(master, overrides)), \
                        (scale, name, job)


def test_missing_data_is_one_line_per_data_set_and_skip_launches_the_rest(tmp_path):
    """sweeps=fig4 (CIFAR-10 and KMNIST) at smoke scale with KMNIST missing: one line naming the
    items, the runs and the place, exit 2, nothing written; with missing_data=skip the CIFAR-10
    runs are launched and complete."""
    data = tmp_path / "data"
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_smoke_data.py"), str(data)],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    shutil.rmtree(data / "kmnist")
    results = tmp_path / "results"
    args = ["-m", "sweeps=fig4", "scale=smoke", f"data_root={data}", "verify_md5.cifar10=false", "rule=normal",
            "width=8", "device=cpu", "progress=none", f"results_dir={results}"]
    refused = main_py(tmp_path, *args)
    assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
    assert refused.stderr.splitlines() == [
        f"walign: error: Figure 4: 1 runs need kmnist at {data}/kmnist: KMNIST not found at {data}/kmnist/KMNIST/raw; "
        f"give data_root=DIR with DIR/kmnist/KMNIST/raw (or dataset.root=DIR/kmnist), or dataset.download=true to "
        f"fetch it with torchvision (missing_data=skip launches the other runs)"], refused.stderr
    assert not results.exists()

    done = main_py(tmp_path, *args, "missing_data=skip")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 runs need kmnist" in done.stderr and "(skipped)" in done.stderr
    assert done.stdout.splitlines()[-1] == "walign sweep: 1 complete", done.stdout
    assert [p.parent.parent.parent.name for p in results.rglob("summary.json")] == ["cifar10"]


@pytest.mark.parametrize("name", ITEMS)
def test_every_item_has_a_smoke_grid_with_its_rules_and_at_most_two_widths(name):
    full, smoke = (grids.sweep_jobs(ROOT / "sweeps" / f"{name}.yaml", scale) for scale in ("full", "smoke"))

    def axis(jobs, key):
        return {o.split("=", 1)[1] for job in jobs for o in job if o.startswith(key + "=")}
    assert axis(smoke, "rule") == axis(full, "rule") and axis(smoke, "dataset") == axis(full, "dataset")
    assert 1 <= len(axis(smoke, "width")) <= 2 and len(axis(smoke, "lr")) <= 1 and len(axis(smoke, "seed")) <= 1
    assert {int(e) for e in axis(smoke, "epochs")} <= {1, 2}


def test_the_smoke_paper_has_at_most_200_runs():
    from walign.spec import RunSpec  # noqa: F401
    union = set()
    for name in ITEMS:
        union |= {spec.run_directory() for spec in grids.sweep_specs(ROOT / "sweeps" / f"{name}.yaml", scale="smoke")}
    assert len(union) <= 200
    assert all(directory.parent.parent.parent.name == "results" for directory in union)


def test_the_smoke_grids_fill_every_table_and_draw_every_figure(tmp_path):
    """The runs of every smoke grid, finished with made-up numbers of the right kind
    (test_sweeps.write_finished_run), give the report at least one of our values in each of
    Tables 1-10 and points in each of Figures 1 and 3-9: the cheap check of what the SLURM
    rehearsal (tests/test_slurm_paper.py) shows with real runs."""
    import csv

    from test_sweeps import write_finished_run
    from walign.report.build import build_report
    root, out = tmp_path / "results", tmp_path / "report"
    written = set()
    for name in ITEMS:
        for spec in grids.sweep_specs(ROOT / "sweeps" / f"{name}.yaml", scale="smoke"):
            if spec.run_directory() not in written:
                written.add(spec.run_directory())
                write_finished_run(root, spec)
    build_report(root, out)
    for number in range(1, 11):
        (table,) = out.glob(f"table{number:02d}_*.csv")
        with open(table) as f:
            assert any(row["ours"] for row in csv.DictReader(f)), f"Table {number} has none of our values"
    index = (out / "REPORT.md").read_text()
    for number in (1, 3, 4, 5, 6, 7, 8, 9):
        (row,) = [line for line in index.splitlines() if line.startswith(f"| Figure {number}:")]
        assert not row.endswith("| no runs |"), row
