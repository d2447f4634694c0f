"""The report's table of runs on networks beyond the paper: the cell protocol (the lr with the best mean
validation accuracy, test error at the best-validation epoch averaged over its seeds), biotorch's
published errors beside the matching rows, and nothing at all for the paper's own networks."""
from __future__ import annotations

import pandas as pd
import pytest

from walign.report import networks


def run(rule, lr, seed, val, test, network="resnet20 depth=20", width=16, arch="resnet20", dataset="cifar10"):
    return {"dataset": dataset, "network": network, "width": width, "epochs": 250.0, "scale": "full", "rule": rule,
            "lr": lr, "seed": seed, "best_val_acc": val, "test_acc_at_best_val": test, "arch": arch,
            "path": f"{dataset}/{rule}/w{width}-lr{lr:g}-s{seed}-{network.replace(' ', '')}"}


def test_cells_take_the_best_lr_by_mean_validation_and_average_test_error_over_its_seeds():
    filling = pd.DataFrame([run("normal", 0.1, 1, 0.90, 0.91), run("normal", 0.1, 2, 0.80, 0.89),   # mean val 0.85
                            run("normal", 0.5, 1, 0.95, 0.50), run("normal", 0.5, 2, 0.70, 0.50),   # mean val 0.825
                            run("fa", 0.1, 1, 0.6, 0.68),
                            run("normal", 1.0, 1, 0.99, 0.99, network="cifar", arch="cifar")])      # a paper net
    found = networks.cells(filling)
    normal = found[found["rule"] == "normal"].iloc[0]
    assert (normal["lr"], normal["seeds"]) == (0.1, 2) and normal["error"] == pytest.approx(10.0)
    assert len(found) == 2 and set(found["network"]) == {"resnet20 depth=20"}
    assert networks.runs_read(found) == {"cifar10/normal/w16-lr0.1-s1-resnet20depth=20",
                                         "cifar10/normal/w16-lr0.1-s2-resnet20depth=20",
                                         "cifar10/fa/w16-lr0.1-s1-resnet20depth=20"}


def test_biotorchs_published_errors_stand_beside_the_matching_rows_only(tmp_path):
    filling = pd.DataFrame([run("normal", 0.1, 1, 0.9, 0.9), run("usf", 0.1, 1, 0.9, 0.8),
                            run("normal", 0.1, 1, 0.9, 0.9, network="resnet20 depth=56"),
                            run("normal", 0.1, 1, 0.9, 0.9, width=32),
                            run("normal", 0.1, 1, 0.9, 0.9, dataset="embedded")])
    names = networks.write(networks.cells(filling), tmp_path, "full")
    assert names == ["networks_beyond_the_paper.md", "networks_beyond_the_paper.csv"]
    table = (tmp_path / names[0]).read_text()
    rows = [line for line in table.splitlines() if line.startswith(("| cifar10", "| embedded"))]
    assert "| cifar10 | resnet20 depth=20 | 16 | 250 | full | 10.00 [1, 0.1] / 8.63 | 20.00 [1, 0.1] / 10.05 |" in table
    assert "| cifar10 | resnet20 depth=56 | 16 | 250 | full | 10.00 [1, 0.1] / 8.3 | — / 8.2 |" in table  # no run, published
    assert "| cifar10 | resnet20 depth=20 | 32 | 250 | full | 10.00 [1, 0.1] | — |" in table   # 2x: not published
    assert "| embedded | resnet20 depth=20 | 16 | 250 | full | 10.00 [1, 0.1] | — |" in table
    assert len(rows) == 4
    csv = pd.read_csv(tmp_path / names[1])
    assert csv.loc[(csv["network"] == "resnet20 depth=56"), "biotorch_error"].tolist() == [8.3]


def test_no_such_runs_no_table_and_no_section(tmp_path):
    filling = pd.DataFrame([run("normal", 1.0, 1, 0.5, 0.5, network="auto", arch="auto")])
    found = networks.cells(filling)
    assert found.empty and networks.write(found, tmp_path, "full") == [] and networks.section(found, []) == []
    assert list(tmp_path.iterdir()) == []
