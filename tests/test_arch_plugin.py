"""A network from outside walign: the example in examples/my_arch (a LeNet-style network as
``arch=lenet``), found through a real entry point (a distribution's metadata on the path, what `pip
install` leaves) or through the short form `+arch_module=`. It is costed from its own geometry,
refuses the rules it cannot serve, runs a sweep of two rules through main.py, and the report
shows its runs."""
from __future__ import annotations

import json
from pathlib import Path

import plugin_site

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "my_arch"
FAST = ["width=4", "epochs=1", "scale=smoke", "progress=none", "device=cpu"]


def installed(tmp: Path) -> Path:
    return plugin_site.installed(tmp, "walign-my-arch", "walign.archs", "my_arch")


def walign(*args, path=(), module: str = "main.py"):
    return plugin_site.run_walign(EXAMPLE, *args, path=path, module=module)


@pytest.fixture
def plugin(monkeypatch):
    """The example imported in this process; its registration is undone afterwards."""
    from walign.archs import ARCHS
    with plugin_site.imported(monkeypatch, EXAMPLE, "my_arch", ARCHS, "lenet") as module:
        yield module


def test_the_example_is_costed_from_the_network_it_builds(plugin):
    from walign import cost
    from walign.archs import ARCHS
    from walign.datasets import DataShape
    shape = DataShape(0, 0, 0, 3, 32, 10, "cifar")
    net = ARCHS["lenet"].create(shape, 6, 4, "relu", "ntk", {"hidden": 20})
    with FlopCounterMode(display=False) as counter:
        net(torch.randn(4, 3, 32, 32))
    assert cost.forward_flops(6, 4, "lenet", 3, 32, 10, {"hidden": 20}) == counter.get_total_flops()
    assert ARCHS["lenet"].geometry(shape, 6, hidden=20).weight_count() == \
        sum(w.numel() for w in net.feedback_weights())
    assert ARCHS["lenet"].options() == {"hidden": 64}


def test_the_short_form_runs_and_refuses_what_it_cannot_serve(tmp_path):
    run = walign("+arch_module=my_arch", "arch=lenet", "arch.hidden=16", "rule=fa", *FAST, f"results_dir={tmp_path}")
    assert run.returncode == 0, run.stderr
    (summary,) = tmp_path.rglob("summary.json")
    values = json.loads(summary.read_text())
    assert (values["status"], values["arch"], values["arch_hidden"], values["rule"]) == ("complete", "lenet", 16, "fa")
    refused = walign("+arch_module=my_arch", "arch=lenet", "rule=align_ada", *FAST, f"results_dir={tmp_path / 'no'}")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "rule align_ada needs" in refused.stderr and "arch lenet does not offer" in refused.stderr
    wrong = walign("+arch_module=my_arch", "arch=lenet", "arch.hidden=0", *FAST, f"results_dir={tmp_path / 'no'}")
    assert wrong.returncode == 2 and "arch.hidden must be a positive integer, got 0" in wrong.stderr
    unknown = walign("+arch_module=my_arch", "arch=lenet", "arch.depth=3", *FAST, f"results_dir={tmp_path / 'no'}")
    assert unknown.returncode == 2 and "arch lenet has no option 'depth'; its options: hidden" in unknown.stderr
    assert not (tmp_path / "no").exists()


def test_an_installed_network_sweeps_two_rules_and_appears_in_the_report(tmp_path):
    site = installed(tmp_path)
    results = tmp_path / "results"
    sweep = walign("-m", "arch=lenet", "rule=normal,fa", *FAST, f"results_dir={results}", path=[site])
    assert sweep.returncode == 0, sweep.stderr
    summaries = [json.loads(p.read_text()) for p in results.rglob("summary.json")]
    assert sorted((s["rule"], s["arch"], s["status"]) for s in summaries) == \
        [("fa", "lenet", "complete"), ("normal", "lenet", "complete")]
    report = walign(str(results), "--out", str(tmp_path / "report"), path=[site], module="walign.report")
    assert report.returncode == 0, report.stderr
    table = (tmp_path / "report" / "networks_beyond_the_paper.md").read_text()
    (row,) = [line for line in table.splitlines() if "lenet" in line]
    assert row.startswith("| embedded | lenet hidden=64 | 4 | 1 | smoke |")
    assert row.count("[1, 5]") == 2  # a cell for each rule: one seed, lr 5
    index = (tmp_path / "report" / "REPORT.md").read_text()
    assert "## Networks beyond the paper" in index and "`lenet hidden=64`" in index
