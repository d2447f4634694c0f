"""Weights & Biases: one W&B run per walign run, offline unless told otherwise (compute nodes
often have no internet; ``wandb sync`` uploads afterwards, and the run prints the command).

project ``logger.wandb.project`` (walign), entity ``logger.wandb.entity``, group = the sweep,
name = the run directory's name, config = the run's config; files under the run directory. The
W&B run's id is kept in loggers.json, so a resumed run continues the same W&B run, and the last
epoch it logged is kept there too: epochs up to it are not logged again.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from .base import Logger, numbers, register


@register
class WandbLogger(Logger):
    name, package, extra = "wandb", "wandb", "wandb"
    options = {"project": "walign", "entity": None, "mode": "offline"}

    def start(self, resume_epoch: int) -> None:
        import wandb
        kept = self.run.state.get("wandb", {})
        run_id = kept.get("id") or secrets.token_hex(6)
        self.last = int(kept.get("last_epoch", 0))
        self.wandb_run = wandb.init(project=self.options["project"], entity=self.options["entity"],
                                    group=self.run.sweep or None, name=self.run.name, id=run_id, resume="allow",
                                    dir=str(self.run.directory), config=self.run.config,
                                    mode=self.options["mode"], reinit="create_new",
                                    settings=wandb.Settings(silent=True, console="off"))
        self.run.remember("wandb", {"id": run_id, "last_epoch": self.last})

    def epoch(self, record: dict) -> None:
        if record["epoch"] <= self.last:
            return
        self.wandb_run.log(numbers(record), step=record["epoch"])
        self.last = record["epoch"]
        self.run.remember("wandb", {"id": self.wandb_run.id, "last_epoch": self.last})

    def finish(self, summary: dict) -> None:
        results = {k: v for k, v in summary.items() if k.startswith(("best_", "final_", "min_"))}
        for key, value in numbers(results).items():
            self.wandb_run.summary[key] = value
        self.wandb_run.summary["walign_status"] = summary.get("status")

    def close(self) -> None:
        run = getattr(self, "wandb_run", None)
        if run is not None:
            offline = self.options["mode"] == "offline"
            folder = run.dir
            run.finish()
            self.wandb_run = None
            if offline:
                print(f"wandb: offline run kept in {Path(folder).parent}; upload it with: wandb sync "
                      f"{Path(folder).parent}", flush=True)
