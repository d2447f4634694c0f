"""MLflow: one MLflow run per walign run, through the client API (no global active run, so the
runs of one process never mix). Its id is kept in the run directory's loggers.json; a resumed run
continues the same MLflow run and logs only the (metric, epoch) points it does not have yet, so
every epoch appears once in each history however often the run was stopped.

* tracking URI: ``logger.mlflow.tracking_uri``; by default a SQLite store in the results
  directory, ``<results_dir>/.mlflow/mlflow.db`` (hidden, so walign status and the report skip it).
  Many processes at once (a SLURM sweep) are better served by a tracking server.
* experiment: ``logger.mlflow.experiment``; by default one per launch: the sweep's name, or
  ``walign`` for a single run. Run name: the run directory's name. Params: the run's config.
* per-epoch metrics at step = epoch; the summary's numbers as ``summary/...`` metrics at the end;
  the run's status (FINISHED, FAILED, KILLED when it was stopped to resume later).

An unreachable server must not hold a run up: unless the environment says otherwise, requests
are tried at most twice with a 10 s timeout, and the first failure drops the logger (one line).
"""
from __future__ import annotations

import os
import time

from .base import Logger, numbers, register


def _flat(config: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:500]
    return out


@register
class MlflowLogger(Logger):
    name, package, extra = "mlflow", "mlflow", "mlflow"
    options = {"tracking_uri": None, "experiment": None}

    def start(self, resume_epoch: int) -> None:
        import logging
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # no store-creation chatter among walign's lines
        uri = self.options["tracking_uri"]
        if uri is None:
            store = (self.run.results_dir / ".mlflow").resolve()
            store.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{store / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        kept = self.run.state.get("mlflow", {})
        if kept.get("tracking_uri") == uri and kept.get("run_id"):
            self.run_id = kept["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            name = self.options["experiment"] or self.run.sweep or "walign"
            found = self.client.get_experiment_by_name(name)
            experiment = found.experiment_id if found is not None else self.client.create_experiment(name)
            self.run_id = self.client.create_run(experiment, run_name=self.run.name,
                                                 tags={"walign.run_dir": str(self.run.directory)}).info.run_id
            self._params()
            self.run.remember("mlflow", {"tracking_uri": uri, "run_id": self.run_id})
        self.logged: dict[str, set[int]] = {}   # metric -> the steps the MLflow run already holds

    def _params(self) -> None:
        from mlflow.entities import Param
        params = [Param(k, v) for k, v in sorted(_flat(self.run.config).items())]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric
        now, metrics = int(time.time() * 1000), []
        for key, value in values.items():
            if key not in self.logged:
                self.logged[key] = {m.step for m in self.client.get_metric_history(self.run_id, key)}
            if step not in self.logged[key]:
                metrics.append(Metric(key, value, now, step))
                self.logged[key].add(step)
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def epoch(self, record: dict) -> None:
        self._log(numbers(record), record["epoch"])

    def finish(self, summary: dict) -> None:
        results = {k: v for k, v in summary.items() if k.startswith(("best_", "final_", "min_", "test_acc"))}
        self._log(numbers(results, "summary/"), summary.get("epochs_done") or 0)
        status = {"complete": "FINISHED", "diverged": "FINISHED"}.get(summary.get("status"), "FAILED")
        self.client.set_tag(self.run_id, "walign.status", summary.get("status", "?"))
        self.client.set_terminated(self.run_id, status)
        self.finished = True

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and not getattr(self, "finished", False) and getattr(self, "run_id", None):
            client.set_terminated(self.run_id, "KILLED")  # stopped to be resumed: RUNNING again then
