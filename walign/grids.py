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
GROUPS = ("dataset", "rule", "task", "launcher", "sweeps")  # config groups: a value picks a config file or node


def sweep_jobs(path: Path) -> list[list[str]]:
    """The job overrides of a sweep file as Hydra's basic sweeper expands them (comma lists, in
    order), after the group choices of its defaults list (as tests/test_sweeps.py does)."""
    from omegaconf import OmegaConf
    sweep = OmegaConf.to_container(OmegaConf.load(path))
    chosen = [f"{key.replace('override /', '')}={value}" for entry in sweep.get("defaults", [])
              for key, value in entry.items()]
    axes = [[f"{key}={v}" for v in str(value).split(",")] if "[" not in str(value) else [f"{key}={value}"]
            for key, value in sweep["hydra"]["sweeper"]["params"].items()]
    return [chosen + list(job) for job in itertools.product(*axes)]


def sweep_specs(path: Path, conf: Path = ROOT / "conf") -> list:
    """Every run of a sweep file as a RunSpec. Hydra composes the config once per choice of the
    config groups a job makes (dataset, rule, task, ...); the job's other values are then set on a
    copy, as Hydra would set them, which is much faster than composing every job."""
    import yaml
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from .spec import RunSpec
    composed, specs = {}, []
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        for job in sweep_jobs(path):
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
    for path in sorted(Path(sweeps).glob("*.yaml"), key=lambda p: (p.stem.rstrip("0123456789"),
                                                                     int(re.sub(r"\D", "", p.stem) or 0))):
        specs = sweep_specs(path)
        flops = [run_flops(s) for s in specs]
        hours = ""
        if measured:
            rates = [None if s.dataset == "add" else rate_for(measured[1], s.rule, s.width) for s in specs]
            if all(rates):
                hours = f"{sum(f / (r * 1e12) for f, r in zip(flops, rates)) / 3600:.1f}"
        lines.append(f"| `{path.name}` | {len(specs)} | {sum(flops) / 1e15:.1f} | {hours} |")
    return "\n".join(lines)



if __name__ == "__main__":
    print(sweep_table())
