"""walign's SLURM launcher: packs a sweep's runs into array tasks, submits them and returns.

Hydra's launchers wait for every job's return value; walign needs none (the run directories are
the record), so this one submits and returns, printing one line, unless ``wait=true``. See
walign/packing.py for how runs are packed and run, walign/sweep_record.py for the record a
submission leaves for ``walign status`` and for relaunches.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher

# a plain dict, not a dataclass: Hydra's plugin scan executes this module outside sys.modules
ConfigStore.instance().store(
    group="hydra/launcher", name="walign_slurm", provider="walign",
    node={"_target_": "hydra_plugins.walign_hydra.slurm_launcher.WalignSlurmLauncher",
          "submitit_folder": "${hydra.sweep.dir}/.submitit/%j", "partition": None, "gpus_per_node": 1,
          "cpus_per_task": 8, "mem_gb": 32, "timeout_min": 1440, "signal_delay_s": 120, "max_num_timeout": 20,
          "array_parallelism": 64, "additional_parameters": {}, "setup": [], "wait": False,
          "pack_minutes": 30.0, "runs_per_task": None, "runs_at_once": 1, "max_array_size": None,
          "tflops": None})

SLURM_KEYS = ("partition", "signal_delay_s", "array_parallelism", "additional_parameters", "setup")


class WalignSlurmLauncher(Launcher):
    writes_records = True  # the sweeper leaves the sweep record to this launcher

    def __init__(self, **params: Any) -> None:
        from omegaconf import OmegaConf
        self.params = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                       for k, v in params.items()}
        self.config = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.config = hydra_context, config

    def check_params(self) -> None:
        """The packing values, checked before anything is written (ConfigError, one line)."""
        from walign.errors import ConfigError
        p = self.params

        def number(key, low, integer=False, optional=False):
            value = p.get(key)
            if value is None and optional:
                return
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= low
            if not ok or (integer and int(value) != value):
                kind = "an integer" if integer else "a number"
                raise ConfigError(f"hydra.launcher.{key} must be {kind} of at least {low}, not {value!r}")
        number("pack_minutes", 1e-3)
        number("runs_per_task", 1, integer=True, optional=True)
        number("runs_at_once", 1, integer=True)
        number("max_array_size", 1, integer=True, optional=True)
        number("tflops", 1e-6, optional=True)
        if not isinstance(p.get("wait"), bool):
            raise ConfigError(f"hydra.launcher.wait must be true or false, not {p.get('wait')!r}")

    # ------------------------------------------------------------------------- preparing
    def _runs(self, job_overrides: Sequence[Sequence[str]]) -> list:
        return packed_runs(self, job_overrides)

    def _executor(self):
        import submitit
        p = self.params
        executor = submitit.AutoExecutor(folder=p["submitit_folder"], cluster="slurm",
                                         slurm_max_num_timeout=int(p["max_num_timeout"]))
        slurm = {f"slurm_{k}": p[k] for k in SLURM_KEYS if p.get(k) not in (None, {}, [])}
        executor.update_parameters(timeout_min=int(p["timeout_min"]), mem_gb=p["mem_gb"],
                                   cpus_per_task=int(p["cpus_per_task"]), gpus_per_node=int(p["gpus_per_node"]),
                                   tasks_per_node=int(p["runs_at_once"]), nodes=1, **slurm)
        return executor

    def _max_array_size(self) -> int:
        from walign.packing import cluster_max_array_size
        return int(self.params.get("max_array_size") or cluster_max_array_size() or 1001)

    # ------------------------------------------------------------------------- launching
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        runs = self._runs(job_overrides)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        by_dir: dict[str, list[int]] = {}  # a sweep over results_dir: each directory gets its own record
        for i, run in enumerate(runs):
            by_dir.setdefault(run.spec.results_dir, []).append(i)
        jobs = [job for results_dir, which in by_dir.items() for job in self._submit(results_dir, [runs[i] for i in which])]
        if not self.params["wait"]:
            return [_job_return(overrides, "queued") for overrides in job_overrides]
        return self._wait(job_overrides, runs, jobs)

    def _pack(self, specs: list) -> tuple[list[float], list[list[int]]]:
        """Each run's estimated seconds, and the runs (indices) of each task."""
        from walign.packing import estimate_seconds, pack
        p = self.params
        seconds = [estimate_seconds(spec, p.get("tflops")) for spec in specs]
        return seconds, pack(seconds, 60.0 * float(p["pack_minutes"]),
                             None if p.get("runs_per_task") is None else int(p["runs_per_task"]))

    def plan_tasks(self, specs: list) -> str:
        """What launching ``specs`` would submit, in words (for plan=true; packed as ``_submit`` packs)."""
        by_dir: dict[str, list] = {}
        for spec in specs:
            by_dir.setdefault(str(Path(spec.results_dir).resolve()), []).append(spec)
        tasks = sum(len(self._pack(group)[1]) for group in by_dir.values())
        how = (f"{self.params['runs_per_task']} runs each" if self.params.get("runs_per_task") is not None
               else f"about {self.params['pack_minutes']:g} minutes of estimated work each (pack_minutes)")
        return f"{tasks} SLURM array tasks, {how}"

    def _submit(self, results_dir: str, runs: list) -> list:
        """Pack ``runs`` (all under ``results_dir``) into tasks, submit them as one or more arrays,
        record each array as soon as it is submitted, print the one line; return the jobs."""
        from walign.packing import PackedTask, split_arrays
        from walign.sweep_record import task_entry, try_write_record
        p = self.params
        seconds, groups = self._pack([run.spec for run in runs])
        executor, record, arrays, tasks, jobs = self._executor(), None, [], [], []
        for chunk in split_arrays(len(groups), self._max_array_size()):
            batch = [groups[t] for t in chunk]
            submitted = executor.submit_array([PackedTask([runs[i] for i in group]) for group in batch])
            arrays.append(str(submitted[0].job_id).split("_")[0])
            for group, job in zip(batch, submitted):
                jobs.append(job)
                tasks.append(task_entry(str(job.job_id), [runs[i].spec for i in group], [seconds[i] for i in group]))
            record = try_write_record(results_dir, "slurm", tasks, " ".join(sys.argv), arrays, bool(p["wait"]),
                                      path=record)
        print(f"walign slurm: submitted {'array job' if len(arrays) == 1 else 'array jobs'} {', '.join(arrays)}: "
              f"{len(groups)} tasks, {len(runs)} runs, about {sum(seconds) / 3600:.2f} GPU-hours; "
              f"follow it with: walign status {results_dir}", flush=True)
        return jobs

    def _wait(self, job_overrides, runs, jobs) -> list[JobReturn]:
        """wait=true: block until every task has ended, then report each run as its directory says."""
        return wait_for_runs(job_overrides, runs, jobs, "SLURM task", poll=2.0)


def wait_for_runs(job_overrides, runs, jobs, what: str, poll: float) -> list[JobReturn]:
    """Block until every submitit job has ended (a job that died is one line naming it, ``what``
    saying what it was), then report each run as its directory says: finished, running in
    another process, or failed. Walign's SLURM and local launchers both end so."""
    from walign.app import finished_summary
    from walign.claim import holder
    for job in jobs:
        while not job.done():
            time.sleep(poll)
        try:
            job.results()
        except Exception as err:  # noqa: BLE001 - the job died (its runs are reported below)
            last = (str(err).strip().splitlines() or [type(err).__name__])[-1]
            print(f"walign: error: {what} {job.job_id} failed: {last}", file=sys.stderr, flush=True)
    returns = []
    for overrides, run in zip(job_overrides, runs, strict=True):
        directory = run.spec.run_directory()
        done = finished_summary(directory)
        status = done["status"] if done else ("running" if holder(directory, lambda *a, **k: None) else "failed")
        returns.append(_job_return(overrides, status))
    return returns


def packed_runs(launcher, job_overrides: Sequence[Sequence[str]]) -> list:
    """A PackedRun per job of ``launcher`` (walign's SLURM or local launcher): its checked RunSpec
    (results_dir made absolute, for other processes and nodes), its resolved configuration
    (without Hydra's node) and the plugin modules it needs. The configurations are the sweeper's
    (job_configs.py) when it handed them over."""
    from omegaconf import OmegaConf, open_dict

    from walign.command import sweep_name
    from walign.packing import PackedRun
    from walign.plugins import MODULE_KEYS
    from walign.spec import RunSpec
    runs = []
    configs = getattr(launcher, "job_configs", None)
    for overrides in job_overrides:
        cfg = (configs.get(overrides) if configs is not None
               else launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides)))
        sweep = sweep_name(cfg.hydra)
        with open_dict(cfg):
            del cfg["hydra"]
        spec = RunSpec.from_config(cfg, sweep)
        spec = dataclasses.replace(spec, results_dir=str(Path(spec.results_dir).resolve()))
        modules = {key: str(cfg[key]) for key in MODULE_KEYS if cfg.get(key)}
        runs.append(PackedRun(spec, OmegaConf.to_yaml(cfg, resolve=True), modules))
    return runs


def _job_return(overrides, status: str) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = status
    return ret
