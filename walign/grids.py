"""The paper's grids as sweep files (sweeps/*.yaml): the runs each one expands to, and what they cost.

    python -m walign.grids         # the Markdown table of every sweep in sweeps/ (runs, PFLOP, GPU-hours)

A sweep file is the one definition of a grid: tests/test_sweeps.py checks that every paper grid
here holds the runs the report's protocol (walign/report/protocol.py) reads for its table or
figure, and this module prices them.
"""
from __future__ import annotations

import itertools
import re
from pathlib import Path

from .cost import measured_throughput, rate_for, run_flops

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"
GROUPS = ("dataset", "rule", "arch", "task", "launcher", "logger", "sweeps")  # config groups: a value picks a config file or node
LABELS = {"table": ("Table", "Tables"), "fig": ("Figure", "Figures")}


def _load(name: str) -> dict:
    from omegaconf import OmegaConf
    return OmegaConf.to_container(OmegaConf.load(SWEEPS / f"{name}.yaml"))


def items(name: str) -> list[str]:
    """The paper items a sweep file stands for: the grids it lists (sweeps/paper.yaml: every table
    and figure), else itself."""
    listed = _load(name).get("hydra", {}).get("sweeper", {}).get("grids")
    return list(listed) if listed else [name]


def item_overrides(name: str, scale: str = "full") -> list[str]:
    """A sweep file's grid as override strings, before expansion: the group choices of its
    defaults list, then its axes (``params``; at scale=smoke its ``smoke`` grid, the same item
    shrunk to a CPU rehearsal). ConfigError if the file has no grid at that scale."""
    from .errors import ConfigError
    sweep = _load(name)
    chosen = [f"{key.replace('override /', '')}={value}" for entry in sweep.get("defaults", [])
              for key, value in entry.items()]
    grid = sweep["hydra"]["sweeper"].get("smoke" if scale == "smoke" else "params")
    if not grid:
        raise ConfigError(f"sweeps/{name}.yaml has no {'smoke ' if scale == 'smoke' else ''}grid")
    return chosen + [f"{key}={value}" for key, value in grid.items()]


def sweep_jobs(path: Path, scale: str = "full") -> list[list[str]]:
    """The job overrides of a sweep file as Hydra's basic sweeper expands them (comma lists, in
    order), after the group choices of its defaults list (as tests/test_sweeps.py does)."""
    overrides = [o.partition("=") for o in item_overrides(Path(path).stem, scale)]
    axes = [[f"{key}={v}" for v in value.split(",")] if "[" not in value else [f"{key}={value}"]
            for key, _, value in overrides]
    return [list(job) for job in itertools.product(*axes)]


def label(names) -> str:
    """'Table 7, Figures 1, 3, 4' for the sweep items ['table7', 'fig1', 'fig3', 'fig4']."""
    parts = []
    for prefix, (one, many) in LABELS.items():
        numbers = sorted(int(n[len(prefix):]) for n in names if re.fullmatch(rf"{prefix}\d+", n))
        if numbers:
            parts.append(f"{one if len(numbers) == 1 else many} {', '.join(map(str, numbers))}")
    others = sorted(n for n in names if not re.fullmatch(r"(table|fig)\d+", n))
    return ", ".join(parts + others)


def sweep_specs(path: Path, conf: Path = ROOT / "conf", scale: str = "full") -> list:
    """Every run of a sweep file (its grid at ``scale``) as a RunSpec. Hydra composes the config
    once per choice of the config groups a job makes (dataset, rule, task, ...); the job's other
    values are then set on a copy, as Hydra would set them, which is much faster than composing
    every job."""
    import yaml
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from .spec import RunSpec
    composed, specs = {}, []
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        for job in sweep_jobs(path, scale):
            job = job + ([f"scale={scale}"] if scale != "full" else [])
            groups = tuple(o for o in job if o.split("=", 1)[0] in GROUPS)
            if groups not in composed:
                composed[groups] = compose(config_name="config", overrides=list(groups))
            cfg = composed[groups].copy()
            with open_dict(cfg):
                for override in job:
                    key, _, value = override.partition("=")
                    if key not in GROUPS:
                        OmegaConf.update(cfg, key, yaml.safe_load(value), merge=False)
            specs.append(RunSpec.from_config(cfg))
    return specs


def sweep_table(sweeps: Path = ROOT / "sweeps", results: Path = ROOT / "benchmarks" / "results") -> str:
    """The Markdown table of every sweep: runs, total PFLOP and (if measured) GPU-hours."""
    measured = measured_throughput(results)
    card = measured[0] if measured else None
    head = f"GPU-hours at fp32 ({card})" if card else "GPU-hours (no GPU measurement yet)"
    lines = [f"| sweep | runs | PFLOP | {head} |", "|---|---:|---:|---:|"]
    for path in sorted((p for p in Path(sweeps).glob("*.yaml") if items(p.stem) == [p.stem]),
                       key=lambda p: (p.stem.rstrip("0123456789"), int(re.sub(r"\D", "", p.stem) or 0))):
        specs = sweep_specs(path)
        flops = [run_flops(s) for s in specs]
        hours = ""
        if measured:
            rates = [None if s.dataset == "add" else rate_for(measured[1], s.rule, s.width, s.arch) for s in specs]
            if all(rates):
                hours = f"{sum(f / (r * 1e12) for f, r in zip(flops, rates)) / 3600:.1f}"
        lines.append(f"| `{path.name}` | {len(specs)} | {sum(flops) / 1e15:.1f} | {hours} |")
    return "\n".join(lines)



if __name__ == "__main__":
    print(sweep_table())
