"""Hydra's basic sweeper, minus the runs that are finished or running elsewhere, with a closing
tally (see the package docstring)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


# a plain dict, not a dataclass: Hydra's plugin scan executes this module outside sys.modules
ConfigStore.instance().store(
    group="hydra/sweeper", name="skip_finished", provider="walign",
    node={"_target_": "hydra_plugins.walign_hydra.skip_finished_sweeper.SkipFinishedSweeper",
          "max_batch_size": None, "params": None})


class _LaunchUnfinished:
    """Stands in front of the real launcher and forwards only the runs that still need running;
    remembers what each launched run ended as."""

    def __init__(self, launcher, hydra_context, config):
        self.launcher, self.hydra_context, self.config = launcher, hydra_context, config
        self.outcomes: dict[str, list[str]] = {}   # status -> run directories
        self.records: list = []                    # sweep records this launch wrote
        self.fresh: list = []                      # run directories that did not exist before this launch
        self.specs: dict[tuple, object] = {}        # a run's overrides -> its checked RunSpec
        self.directories: dict[tuple, str] = {}    # a run's overrides -> its run directory

    def check(self, job_overrides: Sequence[Sequence[str]]) -> None:
        """Every run's values and what they need from this machine (device, a writable
        results_dir), before anything is written; exits 2 with one line on the first bad run."""
        from walign.machine import check_results_dir
        from walign.spec import RunSpec
        from walign.errors import ConfigError

        # SLURM runs on other machines: the device and the data are theirs to check (this login node
        # may have no GPU, the nodes their own scratch), while results_dir is the shared directory
        # they all write to
        remote = "slurm" in str(self.config.hydra.launcher.get("_target_", "")).lower()
        try:
            getattr(self.launcher, "check_params", lambda: None)()
        except ConfigError as err:
            print(f"walign: error: {err}", file=sys.stderr)
            sys.exit(2)
        checked = set()
        for overrides in job_overrides:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            try:
                spec = self.specs[tuple(overrides)] = RunSpec.from_config(cfg)
                needs = (spec.device, spec.results_dir, spec.dataset, repr(sorted(spec.loading.items())))
                if needs not in checked:
                    check_results_dir(spec.results_dir) if remote else spec.check_environment()
                    checked.add(needs)
            except ConfigError as err:
                print(f"walign: error: {err} (in the sweep run {' '.join(overrides)})", file=sys.stderr)
                sys.exit(2)

    def plan(self, job_overrides: Sequence[Sequence[str]]) -> tuple[list, int, int, int, float]:
        """(runs to launch, finished, running elsewhere, queued in SLURM, FLOPs to launch)."""
        from walign.app import finished_summary
        from walign.claim import holder
        from walign.cost import run_flops
        from walign.sweep_record import queued_runs

        todo, finished, running, queued, flops = [], 0, 0, 0, 0.0
        in_queue: dict[str, dict] = {}  # results_dir -> its runs whose SLURM task is still queued
        for overrides in job_overrides:
            if tuple(overrides) not in self.specs:
                self.check([overrides])
            spec = self.specs[tuple(overrides)]
            directory = spec.run_directory()
            self.directories[tuple(overrides)] = str(directory)
            if spec.results_dir not in in_queue:
                in_queue[spec.results_dir] = queued_runs(spec.results_dir)
            # an unreadable summary is reported (and set aside) once, by the run that redoes it
            if finished_summary(directory):
                finished += 1
            elif holder(directory) is not None:
                running += 1
            elif str(directory.relative_to(spec.results_dir)) in in_queue[spec.results_dir]:
                queued += 1  # submitted by an earlier launch and not started yet: its claim comes when it starts
            else:
                todo.append(overrides)
                flops += run_flops(spec)
                if not directory.exists():
                    self.fresh.append(directory)
        return todo, finished, running, queued, flops

    def record(self, todo: Sequence[Sequence[str]]) -> None:
        """For launchers that do not write one (basic, local): a record of this launch, so that
        ``walign status`` can follow the sweep."""
        from walign.packing import estimate_seconds
        from walign.sweep_record import task_entry, try_write_record
        by_dir: dict[str, list] = {}
        for overrides in todo:
            spec = self.specs[tuple(overrides)]
            by_dir.setdefault(spec.results_dir, []).append(spec)
        name = str(self.config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]
        launcher = "local" if "Local" in name else "basic"
        for results_dir, specs in by_dir.items():
            task = task_entry(None, specs, [estimate_seconds(s) for s in specs])
            self.records.append(try_write_record(results_dir, launcher, [task], " ".join(sys.argv), [], True))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        from walign.cost import format_flops

        todo, finished, running, queued, flops = self.plan(job_overrides)
        elsewhere = f", {running} running elsewhere (skipped)" if running else ""
        elsewhere += f", {queued} queued in SLURM (skipped)" if queued else ""
        print(f"walign sweep: {len(job_overrides)} runs, {finished} already finished (skipped){elsewhere}, "
              f"{len(todo)} to launch, {format_flops(flops)}", flush=True)
        if not todo:
            return []
        if not getattr(self.launcher, "writes_records", False):
            self.record(todo)
        returns = self.launcher.launch(todo, initial_job_idx=initial_job_idx)
        for overrides, job in zip(todo, returns):
            self._note(overrides, job)
        return returns

    def _note(self, overrides, job) -> None:
        try:
            status = job.return_value  # re-raises the job's exception, if it had one
        except BaseException:
            status = "failed"
        status = status if status in ("complete", "diverged", "running", "queued") else "failed"
        self.outcomes.setdefault(status, []).append(self.directories[tuple(overrides)])

    def tally(self) -> bool:
        """Print one line for what this launch ran; True if any run failed."""
        if not self.outcomes:
            return False
        if set(self.outcomes) == {"queued"}:
            return False  # submitted and not waited for: the launcher's line said so
        counts = ", ".join(f"{len(self.outcomes[s])} {s}" for s in ("complete", "diverged", "running", "queued",
                                                                    "failed") if s in self.outcomes)
        failed = self.outcomes.get("failed", [])
        print(f"walign sweep: {counts}" + (": " + " ".join(failed) if failed else ""), flush=True)
        return bool(failed)


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
    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = _LaunchUnfinished(self.launcher, hydra_context, config)

    def sweep(self, arguments: list[str]) -> Any:
        # Hydra's sweep starts by creating its folder under results_dir: check every run first,
        # so a refused sweep leaves nothing on disk
        from hydra.core.override_parser.overrides_parser import OverridesParser
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        self.launcher.check([job for batch in self.split_arguments(overrides, None) for job in batch])
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        existed = {path for path in (sweep_dir, *sweep_dir.parents) if path.exists()}
        try:
            returns = super().sweep(arguments)
        except SystemExit as stop:
            # a run found a mistake that holds for the whole sweep (walign.app: data that will not
            # load) and said so in one line: if no run has written anything yet, leave nothing
            if stop.code == 2 and not any(d.exists() for d in self.launcher.fresh):
                _remove_traces(sweep_dir, self.launcher.records, existed)
            raise
        if self.launcher.tally():
            sys.exit(1)
        return returns
