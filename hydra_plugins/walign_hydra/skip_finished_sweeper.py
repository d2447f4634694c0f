"""Hydra's basic sweeper, made walign's: grids from the sweep files (their union for
``sweeps=paper``), each distinct run once, every run checked before anything is written, missing
data said per data set, a plan of what will run and what it costs, finished runs and runs
running elsewhere skipped, and a closing tally (see the package docstring and docs/sweeps.md).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


# a plain dict, not a dataclass: Hydra's plugin scan executes this module outside sys.modules
ConfigStore.instance().store(
    group="hydra/sweeper", name="skip_finished", provider="walign",
    node={"_target_": "hydra_plugins.walign_hydra.skip_finished_sweeper.SkipFinishedSweeper",
          "max_batch_size": None, "params": None, "grids": None, "smoke": None})

MISSING_DATA = ("refuse", "skip", "submit")


def fail(message: str) -> None:
    print(f"walign: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _remove_traces(sweep_dir: Path, records: list, existed: set) -> None:
    """Undo the bookkeeping of a sweep that stopped before any run wrote anything: Hydra's
    folder for this sweep, the sweep records it wrote, and the folders made only for them."""
    shutil.rmtree(sweep_dir, ignore_errors=True)
    for record in records:
        if record is not None:
            Path(record).unlink(missing_ok=True)
    for folder in [sweep_dir.parent, sweep_dir.parent.parent, *{Path(r).parent for r in records if r is not None}]:
        for path in (folder, *folder.parents):
            if path in existed:
                break
            try:
                path.rmdir()  # only if empty
            except OSError:
                break


class SkipFinishedSweeper(BasicSweeper):
    def __init__(self, max_batch_size=None, params=None, grids=None, smoke=None):
        # ``grids`` (sweeps/paper.yaml) and ``smoke`` (each file's scale=smoke grid) are read from
        # the sweep files by walign.grids; they are accepted here so that Hydra can build the sweeper
        super().__init__(max_batch_size=max_batch_size, params=params)

    def setup(self, *, hydra_context, task_function, config) -> None:
        from .job_configs import JobConfigs
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.job_configs = JobConfigs(hydra_context.config_loader, config)
        self.launcher.job_configs = self.job_configs  # a launcher that composes jobs may reuse them
        self.outcomes: dict[str, list[str]] = {}     # status -> run directories
        self.records: list = []                     # sweep records this launch wrote

    # ------------------------------------------------------------------------- the jobs
    def expand(self, arguments: list[str]) -> list[tuple[list[str], str | None]]:
        """Every grid point as (job overrides, sweep file or None). A sweep file's grid is its
        defaults' group choices and its axes (at scale=smoke its smoke grid), then the command
        line, whose values replace the file's; sweeps=paper is the list of its files' grids."""
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from walign import grids
        from walign.errors import ConfigError
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        for override in parser.parse_overrides(list(arguments)):
            if override.key_or_group in ("sweeps", "scale") and override.is_sweep_override():
                fail(f"{override.key_or_group} cannot be swept: give one value (sweeps=paper launches every "
                     f"table and figure)")
        choice = self.config.hydra.runtime.choices.get("sweeps")
        if choice in (None, "null"):
            overrides = parser.parse_overrides(self._parse_config() + list(arguments))
            return [(job, None) for job in self.split_arguments(overrides, None)[0]]
        scale = str(self.config.get("scale", "full"))
        jobs = []
        for name in grids.items(choice):
            try:
                given = grids.item_overrides(name, scale)
            except ConfigError as err:
                fail(str(err))
            overrides = parser.parse_overrides(given + list(arguments))
            jobs += [(job, name) for job in self.split_arguments(overrides, None)[0]]
        return jobs

    def check(self, jobs) -> list:
        """The distinct runs of ``jobs`` (PlannedRun, in order), every value checked, and what they
        need from this machine (device, a writable results_dir) before anything is written; exits 2
        with one line on the first bad run."""
        from walign.errors import ConfigError
        from walign.machine import check_results_dir
        from walign.plan import PlannedRun
        from walign.spec import RunSpec
        try:
            getattr(self.launcher, "check_params", lambda: None)()
        except ConfigError as err:
            fail(str(err))
        runs: dict[Path, PlannedRun] = {}
        checked = set()
        planning = bool(self.config.get("plan", False))  # a plan writes nothing, not even a probe file
        for overrides, item in jobs:
            try:
                spec = RunSpec.from_config(self.job_configs.get(overrides))
                # SLURM runs on other machines: the device is theirs to check (this login node may
                # have no GPU), while results_dir is the shared directory they all write to
                needs = (spec.results_dir, None if self.remote else spec.device)
                if needs not in checked and not planning:
                    check_results_dir(spec.results_dir) if self.remote else spec.check_environment(data=False)
                    checked.add(needs)
            except ConfigError as err:
                fail(f"{err} (in the sweep run {' '.join(overrides)})")
            run = runs.setdefault(spec.run_directory(), PlannedRun(list(overrides), spec, on_cpu=self.on_cpu(spec)))
            if item is not None:
                run.items.add(item)
        return list(runs.values())

    def check_data(self, runs: list) -> list:
        """The runs whose data is where they will look for it. Missing data is one line per data
        set, naming the items and the number of runs that need it; ``missing_data`` says what
        then: refuse (exit 2, nothing launched), skip (launch the rest) or submit (check nothing
        here: the data is on the nodes)."""
        from walign import grids
        from walign.errors import ConfigError
        mode = str(self.config.get("missing_data", "refuse"))
        if mode not in MISSING_DATA:
            fail(f"missing_data must be one of {', '.join(MISSING_DATA)}, got {mode!r}")
        if mode == "submit":
            return runs
        missing: dict[tuple, tuple[str, list]] = {}
        found = set()
        for run in runs:  # by data folder: small_cifar10 reads cifar10's files
            key = (run.spec.entry.folder or run.spec.dataset, repr(sorted(run.spec.loading.items())))
            if key in found:
                continue
            if key not in missing:
                try:
                    run.spec.entry.check_available(run.spec.loading)
                    found.add(key)
                    continue
                except ConfigError as err:
                    missing[key] = (str(err), [])
            missing[key][1].append(run)
        merged: dict[tuple, tuple[str, list]] = {}  # one line per data set and place looked in
        for (folder, _), (reason, needing) in missing.items():
            place = (folder, str(needing[0].spec.loading.get("root", "")))
            merged.setdefault(place, (reason, []))[1].extend(needing)
        missing = merged
        if not missing:
            return runs
        plan = bool(self.config.get("plan", False))
        for (dataset, where), (reason, needing) in missing.items():
            items = grids.label({item for run in needing for item in run.items})
            then = {"refuse": "missing_data=skip launches the other runs", "skip": "skipped"}[mode]
            print(f"walign: {'warning' if plan or mode == 'skip' else 'error'}: {items + ': ' if items else ''}"
                  f"{len(needing)} runs need {dataset}{' at ' + str(where) if where else ''}: {reason} ({then})",
                  file=sys.stderr, flush=True)
        if mode == "refuse" and not plan:
            sys.exit(2)
        lacking = {id(run) for _, needing in missing.values() for run in needing}
        return runs if plan else [run for run in runs if id(run) not in lacking]

    def on_cpu(self, spec) -> bool:
        """Whether the run will train on a CPU: device=cpu, or device=auto here without a GPU
        (SLURM nodes are taken to have the GPUs they are asked for)."""
        if spec.device.startswith("cpu") or self.remote:
            return spec.device.startswith("cpu")
        from walign.errors import ConfigError
        from walign.machine import resolve_device
        try:
            return resolve_device(spec.device).type == "cpu"
        except ConfigError:  # cuda asked for where there is none: a plan says so later, a launch refused it
            return False

    @property
    def remote(self) -> bool:
        return "slurm" in str(self.config.hydra.launcher.get("_target_", "")).lower()

    # ------------------------------------------------------------------------- the sweep
    def sweep(self, arguments: list[str]) -> Any:
        from walign import plan as planning
        jobs = self.expand(arguments)
        # Hydra's sweep folder and the records come only after every run is checked, so a
        # refused sweep, or a plan, leaves nothing on disk
        runs = self.check_data(self.check(jobs))
        planning.judge(runs, getattr(self.launcher, "params", {}).get("tflops"))
        todo = [run for run in runs if run.state == "to launch"]
        items = {item for run in runs for item in run.items}
        if self.config.get("plan", False):
            return self.print_plan(runs, len(jobs), todo)
        if len(items) > 1:
            print("\n".join(planning.table(runs)), flush=True)
        print(planning.total_line(runs, len(jobs)), flush=True)
        if not todo:
            return []
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        existed = {path for path in (sweep_dir, *sweep_dir.parents) if path.exists()}
        try:
            returns = self.launch(todo, sweep_dir)
        except SystemExit as stop:
            # a run found a mistake that holds for the whole sweep (walign.app: data that will not
            # load) and said so in one line: if no run has written anything yet, leave nothing
            if stop.code == 2 and not any(run.directory.exists() for run in todo):
                _remove_traces(sweep_dir, self.records, existed)
            raise
        if self.tally():
            sys.exit(1)
        return returns

    def print_plan(self, runs, points: int, todo) -> list:
        """plan=true: the table, the totals and the tasks; nothing written, nothing launched."""
        from walign import plan as planning
        launcher = str(self.config.hydra.runtime.choices.get("hydra/launcher", "basic"))
        print(f"walign plan: {self.config.hydra.runtime.choices.get('sweeps') or 'a sweep'}, "
              f"scale={self.config.get('scale', 'full')}, launcher {launcher}; nothing is written or launched")
        print("\n".join(planning.table(runs)))
        print(planning.total_line(runs, points).replace("walign sweep:", "total:"))
        tasks = getattr(self.launcher, "plan_tasks", None)
        print(f"tasks: {tasks([run.spec for run in todo]) if tasks else f'{len(todo)} jobs of one run each'}",
              flush=True)
        return []

    def launch(self, todo: list, sweep_dir: Path) -> list:
        """Hydra's basic loop over the runs to launch, in batches of max_batch_size."""
        from omegaconf import OmegaConf
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if not getattr(self.launcher, "writes_records", False):
            self.record(todo)
        size, returns = self.max_batch_size or len(todo), []
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            results = self.launcher.launch([run.overrides for run in batch], initial_job_idx=start)
            for run, job in zip(batch, results):
                self.note(run, job)
            returns.append(results)
        return returns

    def record(self, todo: list) -> None:
        """For launchers that do not write one (basic, local): a record of this launch, so that
        ``walign status`` can follow the sweep."""
        from walign.sweep_record import task_entry, try_write_record
        by_dir: dict[str, list] = {}
        for run in todo:
            by_dir.setdefault(run.spec.results_dir, []).append(run)
        name = str(self.config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]
        launcher = "local" if "Local" in name else "basic"
        for results_dir, runs in by_dir.items():
            task = task_entry(None, [run.spec for run in runs], [run.seconds for run in runs])
            self.records.append(try_write_record(results_dir, launcher, [task], " ".join(sys.argv), [], True))

    def note(self, run, job) -> None:
        try:
            status = job.return_value  # re-raises the job's exception, if it had one
        except BaseException:
            status = "failed"
        status = status if status in ("complete", "diverged", "running", "queued") else "failed"
        self.outcomes.setdefault(status, []).append(str(run.directory))

    def tally(self) -> bool:
        """Print one line for what this launch ran; True if any run failed."""
        if not self.outcomes or set(self.outcomes) == {"queued"}:
            return False  # nothing ran, or submitted and not waited for: the launcher's line said so
        counts = ", ".join(f"{len(self.outcomes[s])} {s}" for s in ("complete", "diverged", "running", "queued",
                                                                    "failed") if s in self.outcomes)
        failed = self.outcomes.get("failed", [])
        print(f"walign sweep: {counts}" + (": " + " ".join(failed) if failed else ""), flush=True)
        return bool(failed)
