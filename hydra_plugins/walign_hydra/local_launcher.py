"""walign's local launcher: a sweep's runs in a few processes on this machine, each with its share
of the cores (or its GPU), waiting for them all.

Hydra's submitit local launcher starts every run of a sweep as a process at once, each free to use
every core: 24 runs on 2 cores made 24 processes of 2 threads, and a compiled step, whose gain
is in keeping the cores busy, ended 3x slower than an eager one (docs/performance.md). Here the
runs are split into ``processes`` groups of about equal estimated work (walign.packing.balance),
each run one after another in a process of its own (walign.packing.PackedTask, as on SLURM), with
torch's and OpenMP's threads set to the process's share of the cores. With runs on a GPU, there is
one process per visible GPU, each seeing only its own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher

from .slurm_launcher import packed_runs, wait_for_runs

# a plain dict, not a dataclass: Hydra's plugin scan executes this module outside sys.modules
ConfigStore.instance().store(
    group="hydra/launcher", name="walign_local", provider="walign",
    node={"_target_": "hydra_plugins.walign_hydra.local_launcher.WalignLocalLauncher",
          "submitit_folder": "${hydra.sweep.dir}/.submitit/%j", "processes": None, "timeout_min": 4320})


class WalignLocalLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        self.params = dict(params)
        self.config = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.config = hydra_context, config

    def check_params(self) -> None:
        from walign.errors import ConfigError
        processes, timeout = self.params.get("processes"), self.params.get("timeout_min")
        if processes is not None and (isinstance(processes, bool) or not isinstance(processes, int) or processes < 1):
            raise ConfigError(f"hydra.launcher.processes must be an integer of at least 1 (or null: one per core, "
                              f"or per GPU), not {processes!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"hydra.launcher.timeout_min must be a positive number, not {timeout!r}")

    def layout(self, specs: list) -> tuple[int, int, int]:
        """(processes, threads each, GPUs): one process per GPU when the runs use GPUs, else one
        per core, never more processes than runs."""
        from walign.machine import resolve_device
        from walign.packing import share_of_cores
        gpus = 0
        if any(resolve_device(spec.device).type == "cuda" for spec in specs):
            import torch
            gpus = torch.cuda.device_count()
        wanted = self.params.get("processes") or gpus or share_of_cores(1)
        processes = max(1, min(wanted, len(specs)))
        return processes, share_of_cores(processes), gpus

    def plan_tasks(self, specs: list) -> str:
        processes, threads, gpus = self.layout(specs)
        where = f", {min(processes, gpus)} GPUs" if gpus else ""
        return f"{processes} processes on this machine{where}, {threads} threads each"

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit
        from walign.packing import PackedTask, balance, estimate_seconds
        runs = packed_runs(self, job_overrides)
        processes, threads, gpus = self.layout([run.spec for run in runs])
        groups = balance([estimate_seconds(run.spec) for run in runs], processes)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        executor = submitit.LocalExecutor(folder=self.params["submitit_folder"])
        executor.update_parameters(timeout_min=float(self.params["timeout_min"]), tasks_per_node=1)
        tasks = [PackedTask([runs[i] for i in group], threads, (k % gpus) if gpus else None)
                 for k, group in enumerate(groups)]
        print(f"walign local: {len(runs)} runs in {len(tasks)} processes, {threads} threads each"
              + (f", one GPU each of {gpus}" if gpus else ""), flush=True)
        return wait_for_runs(job_overrides, runs, executor.submit_array(tasks), "local process", poll=0.5)
