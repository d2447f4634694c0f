"""TensorBoard: event files in the run directory's ``tensorboard/`` folder, so that
``tensorboard --logdir RESULTS_DIR`` shows every run, named by its path.

A resumed run reopens the folder with ``purge_step`` = the checkpoint's epoch + 1: TensorBoard's
reader then drops every event of an earlier process at that step or later (an epoch logged before
a kill -9 but after the last checkpoint), and the epochs trained again are the ones it shows, each
once.
"""
from __future__ import annotations

from .base import Logger, numbers, register

FOLDER = "tensorboard"


@register
class TensorBoardLogger(Logger):
    name, package, extra = "tensorboard", "tensorboard", "tensorboard"
    options = {}

    def start(self, resume_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(self.run.directory / FOLDER), purge_step=resume_epoch + 1)

    def epoch(self, record: dict) -> None:
        for key, value in numbers(record).items():
            self.writer.add_scalar(key, value, global_step=record["epoch"])
        self.writer.flush()

    def finish(self, summary: dict) -> None:
        step = summary.get("epochs_done") or 0
        results = {k: v for k, v in summary.items() if k.startswith(("best_", "final_", "min_"))}
        for key, value in numbers(results).items():
            self.writer.add_scalar(f"summary/{key}", value, global_step=step)

    def close(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None:
            writer.close()
            self.writer = None
