"""Many runs per SLURM array task: estimate each run's time, pack runs into tasks, run a pack.

A paper grid is mostly tiny runs (Table 9's N = 45 runs train for seconds), and a process start
(imports, CUDA, data loading) plus the scheduler's wait per task can cost more than the training.
So the SLURM launcher gives each array task several runs, run one after another in one process.

Packing is by estimated seconds: a run's FLOPs (walign.cost) over a throughput, plus a fixed
``RUN_OVERHEAD_S`` per run. The throughput is the newest GPU measurement committed under
benchmarks/results/ for the run's rule and nearest width, else ``DEFAULT_TFLOPS``; either can be
overridden with one figure (``hydra.launcher.tflops``). Narrow nets run far below any measured
rate, so their estimate is low, which the per-run overhead partly absorbs.

Each run in a pack is still a run of its own: ``walign.app.execute`` claims it, checkpoints it and
resumes it. A run that fails is recorded as failed (summary.json, error.log) and the pack goes on.
A requeued task (time limit, preemption, USR2) starts its pack again: finished runs are found
finished at once, and the interrupted one resumes from its checkpoint.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass, field

DEFAULT_TFLOPS = 10.0   # a modest fraction of a current GPU at fp32 (the H200 measured 34 at width 512)
RUN_OVERHEAD_S = 5.0    # per run inside a task: building the net, loading the data, writing files


def estimate_seconds(spec, tflops: float | None = None) -> float:
    """Estimated seconds of a run (a walign.spec.RunSpec) on one GPU (see the module docstring)."""
    from .cost import rate_for, run_flops
    rate = tflops
    if rate is None:
        measured = _measured_throughput()
        rate = rate_for(measured[1], spec.rule, spec.width, spec.arch) if measured else None
    rate = rate or DEFAULT_TFLOPS
    return run_flops(spec) / (rate * 1e12) + RUN_OVERHEAD_S


@functools.lru_cache(maxsize=1)
def _measured_throughput():
    from .cost import measured_throughput
    return measured_throughput()


def pack(seconds: list[float], pack_seconds: float, runs_per_task: int | None = None) -> list[list[int]]:
    """Group run indices into tasks. With ``runs_per_task``, consecutive groups of that many runs;
    otherwise first-fit decreasing: each task holds about ``pack_seconds`` of work, a run longer
    than that gets a task of its own. Tasks are returned in the order of their first run."""
    if runs_per_task is not None:
        if runs_per_task < 1:
            raise ValueError(f"runs_per_task must be at least 1, not {runs_per_task}")
        return [list(range(i, min(i + runs_per_task, len(seconds)))) for i in range(0, len(seconds), runs_per_task)]
    if pack_seconds <= 0:
        raise ValueError(f"pack_minutes must be positive, not {pack_seconds / 60:g}")
    tasks: list[list[int]] = []
    loads: list[float] = []
    for i in sorted(range(len(seconds)), key=lambda i: (-seconds[i], i)):
        for t, load in enumerate(loads):
            if load + seconds[i] <= pack_seconds:
                tasks[t].append(i)
                loads[t] += seconds[i]
                break
        else:
            tasks.append([i])
            loads.append(seconds[i])
    return sorted((sorted(task) for task in tasks), key=lambda task: task[0])


def balance(seconds: list[float], groups: int) -> list[list[int]]:
    """Run indices split into at most ``groups`` groups of about equal estimated work (longest
    first, each to the least loaded group), for processes that all start at once. Groups are
    returned in the order of their first run, each in run order."""
    loads = [0.0] * max(1, min(groups, len(seconds)))
    tasks: list[list[int]] = [[] for _ in loads]
    for i in sorted(range(len(seconds)), key=lambda i: (-seconds[i], i)):
        least = min(range(len(loads)), key=lambda t: (loads[t], t))
        tasks[least].append(i)
        loads[least] += seconds[i]
    return sorted((sorted(task) for task in tasks if task), key=lambda task: task[0])


def share_of_cores(processes: int) -> int:
    """Threads for each of ``processes`` processes started together on this machine, so that
    together they use its cores and no more (at least one each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, processes))


def split_arrays(n_tasks: int, max_array_size: int) -> list[range]:
    """Task index ranges of the arrays a sweep of ``n_tasks`` tasks is submitted as."""
    if max_array_size < 1:
        raise ValueError(f"max_array_size must be at least 1, not {max_array_size}")
    return [range(i, min(i + max_array_size, n_tasks)) for i in range(0, n_tasks, max_array_size)]


def cluster_max_array_size() -> int | None:
    """SLURM's MaxArraySize (an array holds at most that many tasks, indices 0..MaxArraySize-1),
    from ``scontrol show config``; None when scontrol is missing or does not say."""
    if shutil.which("scontrol") is None:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, re.MULTILINE)
    return int(match.group(1)) if match and out.returncode == 0 else None


# ----------------------------------------------------------------------------- on the node
@dataclass
class PackedRun:
    spec: object            # walign.spec.RunSpec
    config_yaml: str = ""   # the run's resolved configuration, written to its config.yaml
    modules: dict = field(default_factory=dict)  # rule_module / dataset_module: the user's modules, imported first


def _rank() -> tuple[int, int]:
    """(this process, processes) of the task: ``runs_at_once`` processes share a task's runs."""
    return int(os.environ.get("SLURM_PROCID", 0)), max(1, int(os.environ.get("SLURM_NTASKS", 1)))


@dataclass
class PackedTask:
    """What one array task runs: its runs, one after another (this process's share of them when
    the task has several processes). Returns each run's status. Picklable (submitit sends it).

    ``threads``: torch's and OpenMP's threads in this process, its share of a machine that several
    walign processes share (launcher=local); on SLURM, the task's own CPUs (SLURM_CPUS_PER_TASK).
    Each process using every core of a shared machine makes all of them slower, and a compiled
    step most of all (docs/performance.md). ``gpu``: the one GPU this process uses, if set."""
    runs: list[PackedRun] = field(default_factory=list)
    threads: int | None = None
    gpu: int | None = None

    def _claim_resources(self) -> None:
        threads = self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0) or 0)
        if threads:
            import torch
            torch.set_num_threads(threads)
            os.environ["OMP_NUM_THREADS"] = os.environ["TORCHINDUCTOR_COMPILE_THREADS"] = str(threads)
        if self.gpu is not None:  # before CUDA starts in this process
            os.environ["CUDA_VISIBLE_DEVICES"] = str(self.gpu)

    def __call__(self) -> list[str]:
        from .app import execute
        from .plugins import import_user_modules
        self._claim_resources()
        rank, size = _rank()
        statuses = []
        for i, run in enumerate(self.runs):
            if i % size != rank:
                continue
            try:
                import_user_modules(run.modules)
                summary = execute(run.spec, run.config_yaml)
                status = summary["status"]
                if status == "failed":
                    print(f"walign: run failed: {summary.get('error')} ({summary.get('run_dir')}/error.log)",
                          file=sys.stderr, flush=True)
                else:
                    print(f"{status}: {summary.get('run_dir')}", flush=True)
            except Exception as err:  # noqa: BLE001 - one bad run must not stop the pack; a stop signal still does
                traceback.print_exc()
                print(f"walign: run failed before training: {err} ({run.spec.run_directory()})",
                      file=sys.stderr, flush=True)
                status = "failed"
            statuses.append(status)
        return statuses

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on USR2 (time limit, preemption): requeue the same pack. Every run
        saved its state at its last step, so the requeued task resumes where this one stopped."""
        from submitit.helpers import DelayedSubmission
        return DelayedSubmission(self, *args, **kwargs)
