"""What a launch would do, before it does it: runs, their state, their cost, the tasks they make.

A sweep's runs are first judged (walign.verdict, walign.claim, the sweep records): finished,
running elsewhere, queued in SLURM, or to launch. ``Plan`` counts them per paper item (a table or
figure whose grid holds the run; a run shared by several items counts in each) and in total
(each distinct run once), with the FLOPs (walign.cost) and the estimated GPU-hours (walign.packing:
the committed GPU measurement, plus a fixed overhead per run) of the runs to launch on GPUs; a
run on the CPU gets no estimate, since the measurement is a GPU's. ``plan=true``
prints it and stops; a real launch prints the same totals before it launches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

STATES = ("finished", "running", "queued", "to launch")


@dataclass
class PlannedRun:
    overrides: list[str]          # the job's overrides, as the launcher receives them
    spec: object                  # its walign.spec.RunSpec
    items: set = field(default_factory=set)   # the sweep files (paper items) whose grid holds it
    state: str = "to launch"      # one of STATES
    flops: float = 0.0
    seconds: float = 0.0          # estimated, on one GPU (0 for a run on the CPU: no estimate there)
    on_cpu: bool = False          # it will run on a CPU (device=cpu, or auto on a machine without a GPU)

    @property
    def directory(self) -> Path:
        return self.spec.run_directory()


def judge(runs: list[PlannedRun], tflops: float | None = None) -> None:
    """Set each run's state, FLOPs and estimated seconds (reads the results directories only)."""
    from .claim import holder
    from .cost import run_flops
    from .packing import estimate_seconds
    from .sweep_record import queued_runs
    from .verdict import judge as verdict
    in_queue: dict[str, dict] = {}
    for run in runs:
        directory, results_dir = run.directory, run.spec.results_dir
        if results_dir not in in_queue:
            in_queue[results_dir] = queued_runs(results_dir)
        if verdict(directory).finished:
            run.state = "finished"
        elif holder(directory, say=lambda *a, **k: None) is not None:
            run.state = "running"
        elif str(directory.relative_to(results_dir)) in in_queue[results_dir]:
            run.state = "queued"
        else:
            run.state = "to launch"
        run.flops = run_flops(run.spec)
        run.seconds = 0.0 if run.on_cpu else estimate_seconds(run.spec, tflops)


def _row(name: str, runs: list[PlannedRun]) -> list[str]:
    counts = [sum(r.state == state for r in runs) for state in STATES]
    todo = [r for r in runs if r.state == "to launch"]
    return [name, str(len(runs)), *map(str, counts), f"{sum(r.flops for r in todo) / 1e15:.1f}",
            f"{sum(r.seconds for r in todo) / 3600:.1f}"]


def table(runs: list[PlannedRun]) -> list[str]:
    """One row per paper item, then the total over distinct runs, as aligned text."""
    from .grids import label
    names = sorted({item for run in runs for item in run.items},
                   key=lambda n: (not n.startswith("table"), int("".join(c for c in n if c.isdigit()) or 0), n))
    rows = [["item", "runs", "finished", "running", "queued", "to launch", "PFLOP", "GPU-hours"]]
    rows += [_row(label([name]), [r for r in runs if name in r.items]) for name in names]
    rows.append(_row("total (distinct runs)", runs))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in rows]


def total_line(runs: list[PlannedRun], points: int) -> str:
    """The sweep's one-line total: what is skipped and what is launched, and its cost."""
    from .cost import format_flops
    count = {state: sum(r.state == state for r in runs) for state in STATES}
    todo = [r for r in runs if r.state == "to launch"]
    repeated = f" ({points} grid points)" if points != len(runs) else ""
    elsewhere = f", {count['running']} running elsewhere (skipped)" if count["running"] else ""
    elsewhere += f", {count['queued']} queued in SLURM (skipped)" if count["queued"] else ""
    on_cpu = sum(r.on_cpu for r in todo)
    time = [f"about {sum(r.seconds for r in todo) / 3600:.2f} GPU-hours"] if len(todo) > on_cpu or not todo else []
    time += [f"{on_cpu} on the CPU (no time estimate)"] if on_cpu else []
    return (f"walign sweep: {len(runs)} runs{repeated}, {count['finished']} already finished (skipped){elsewhere}, "
            f"{len(todo)} to launch, {format_flops(sum(r.flops for r in todo))}, {', '.join(time)}")
