"""Hydra's basic sweeper, minus the runs that are already finished (see the package docstring)."""
from __future__ import annotations

import sys
from typing import Any, Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore


# a plain dict, not a dataclass: Hydra's plugin scan executes this module outside sys.modules
ConfigStore.instance().store(
    group="hydra/sweeper", name="skip_finished", provider="walign",
    node={"_target_": "hydra_plugins.walign_hydra.skip_finished_sweeper.SkipFinishedSweeper",
          "max_batch_size": None, "params": None})


class _LaunchUnfinished:
    """Stands in front of the real launcher and forwards only the runs that still need running."""

    def __init__(self, launcher, hydra_context, config):
        self.launcher, self.hydra_context, self.config = launcher, hydra_context, config

    def unfinished(self, job_overrides: Sequence[Sequence[str]]) -> list:
        from walign.app import FINISHED, RunSpec
        from walign.errors import ConfigError
        from walign.runs import read_summary

        todo = []
        for overrides in job_overrides:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            try:
                directory = RunSpec.from_config(cfg).run_directory()
            except ConfigError as err:
                print(f"walign: error: {err} (in the sweep run {' '.join(overrides)})", file=sys.stderr)
                sys.exit(2)
            summary = read_summary(directory)
            if not (summary and summary.get("status") in FINISHED):
                todo.append(overrides)
        return todo

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[Any]:
        todo = self.unfinished(job_overrides)
        skipped = len(job_overrides) - len(todo)
        print(f"walign sweep: {len(job_overrides)} runs, {skipped} already finished (skipped), "
              f"{len(todo)} to launch", flush=True)
        if not todo:
            return []
        return self.launcher.launch(todo, initial_job_idx=initial_job_idx)


class SkipFinishedSweeper(BasicSweeper):
    def setup(self, *, hydra_context, task_function, config) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = _LaunchUnfinished(self.launcher, hydra_context, config)
