"""FLOP counts (walign/cost.py): a hand count of the CIFAR net, the relations between rules, whole
runs, and an independent check against torch's FlopCounterMode on real steps."""
import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from walign import cost, grids
from walign.spec import RunSpec
from walign.nets import ARCHITECTURES, ConvNet, NetSpec
from walign.rnn import AddRNN
from walign.rules import RULES, build_rule

CNN_RULES = ["normal", "align_ada", "align_zero", "align_prop", "fa", "dfa", "last_layer", "gd_wstar"]
RNN_RULES = ["normal", "align_ada", "align_zero", "readout_only"]


def hand_count_cifar_width8_batch100():
    """One conv pass of each layer of the 7-conv CIFAR net at width 8, batch 100, written out:
    2 * B * H_out * W_out * C_out * 9 * C_in, with strides 1,1,1,2,1,2,1 giving 32,32,32,16,16,8,8."""
    b, c = 100, 8
    return [2 * b * 32 * 32 * c * 9 * 3,   # layer 1: 44 236 800
            2 * b * 32 * 32 * c * 9 * c,   # layer 2: 117 964 800
            2 * b * 32 * 32 * c * 9 * c,   # layer 3
            2 * b * 16 * 16 * c * 9 * c,   # layer 4 (stride 2): 29 491 200
            2 * b * 16 * 16 * c * 9 * c,   # layer 5
            2 * b * 8 * 8 * c * 9 * c,     # layer 6 (stride 2): 7 372 800
            2 * b * 8 * 8 * c * 9 * c]     # layer 7


def test_one_step_of_the_cifar_net_at_width_8_matches_the_hand_count():
    layers = hand_count_cifar_width8_batch100()
    assert layers[0] == 44_236_800 and sum(layers) == 353_894_400
    head = 2 * 100 * 8 * 10  # one product of the head: pooled 8 features -> 10 classes
    normal = cost.step_flops("normal", 8, 100)
    assert normal["layers"] == layers
    # backprop: every forward, input gradients of layers 2..7, every weight gradient, the head's three
    assert normal["total"] == sum(layers) + sum(layers[1:]) + sum(layers) + 3 * head == 1_017_494_400
    ada = cost.step_flops("align_ada", 8, 100)
    # current forward + frozen forward, the frozen input gradients (2..7), the current weight
    # gradients; head: two forwards, the frozen input gradient and e W_fc(0), one weight gradient
    assert ada["total"] == 2 * sum(layers) + sum(layers[1:]) + sum(layers) + 5 * head == 1_371_420_800
    zero = cost.step_flops("align_zero", 8, 100)
    assert zero["total"] == 2 * sum(layers) + sum(layers[1:]) + sum(layers) + 4 * head
    last = cost.step_flops("last_layer", 8, 100)
    assert last["total"] == sum(layers) + 2 * head
    dfa = cost.step_flops("dfa", 8, 100)
    projections = sum(2 * 100 * 10 * 8 * s * s for s in (32, 32, 32, 16, 16, 8, 8))  # e (B x 10) D_l (10 x HWC)
    assert dfa["total"] == 2 * sum(layers) + 2 * head + projections


def test_rule_relations():
    step = {r: cost.step_flops(r, 16, 50) for r in CNN_RULES}
    normal, frozen_forward = step["normal"], step["normal"]["forward"]
    # Align-ada: Normal + a frozen forward (its input gradients are the frozen network's instead of
    # the current one's) + the head's extra forward and e W_fc(0)
    head = 2 * 50 * 16 * 10
    assert step["align_ada"]["total"] == normal["total"] + frozen_forward + 2 * head
    assert step["align_zero"]["total"] == normal["total"] + frozen_forward + head
    assert step["align_prop"]["total"] == step["fa"]["total"] == normal["total"]
    assert step["dfa"]["input_grad"] == 0 and step["dfa"]["projection"] > 0
    # gd_wstar: two backprops, less the frozen head's weight gradient
    assert step["gd_wstar"]["total"] == 2 * normal["total"] - head
    assert step["last_layer"]["total"] == frozen_forward + 2 * head


def test_shapes_follow_the_network():
    for arch, (channels, size) in {"cifar": (3, 32), "kmnist": (1, 28), "imagenet": (3, 224)}.items():
        net = ConvNet(NetSpec(arch, 4, channels, size))
        assert [(c, h, w) for _, c, h, w in cost.conv_layers(arch, 4, channels, size)] == net.feature_shapes
        assert len(ARCHITECTURES[arch]) == net.depth


def test_the_passes_table_in_the_docstring_is_the_rules_own():
    rows = re.findall(r"^\| (\w+) \| (cnn|rnn) \| ([\d |]+?) \| [^|]+ \|$", cost.__doc__, re.M)
    own = [(n, f) for n, families in RULES.items() for f, cls in families.items() if cls.__module__.startswith("walign.")]
    assert sorted((name, family) for name, family, _ in rows) == sorted(own)  # plugins' rules are their own
    for name, family, numbers in rows:
        p = RULES[name][family].passes
        assert [int(n) for n in numbers.split("|")] == [p.forward, p.input_grad, p.weight_grad, p.head_forward,
                                                        p.head_input_grad, p.head_weight_grad, p.projection]


def spec(**values):
    base = dict(dataset="embedded", rule="normal", width=8, lr=1.0, epochs=3, batch_size=50, seed=99)
    return RunSpec(**{**base, **values})


def test_a_whole_run_is_steps_times_step_plus_evaluation():
    step = cost.step_flops("normal", 8, 50)["total"]
    image = cost.forward_flops(8, 1)
    # embedded: 1500 training images -> 30 steps of 50; 1500 validation + 1000 test images
    assert cost.run_flops(spec()) == 3 * (30 * step + (1500 + 1000) * image)
    assert cost.run_flops(spec(eval_test=False)) == 3 * (30 * step + 1500 * image)
    # evaluation drops the partial batch as the splits do: 1000 // 300 * 300 = 900 test images
    assert cost.run_cost(spec(batch_size=300))["evaluation"] == 3 * (1500 + 900) * image
    # small CIFAR-10 with 45 images: batch 45 by the released rule, 45 validation, 9990 test
    small = spec(dataset="small_cifar10", batch_size=None, data_options={"train_size": 45})
    assert cost.run_flops(small) == 3 * (cost.step_flops("normal", 8, 45)["total"] + (45 + 9990) * image)


def test_imagenet_keeps_its_partial_last_batch():
    run = spec(dataset="imagenet", rule="dfa", batch_size=100, epochs=1, rule_options={"projection": "shared"})
    net = dict(arch="imagenet", image_size=224, classes=1000, rule_options={"projection": "shared"})
    expected = 12811 * cost.step_flops("dfa", 8, 100, **net)["total"] + cost.step_flops("dfa", 8, 67, **net)["total"]
    found = cost.run_cost(run)
    assert found["steps_per_epoch"] == 12812 and found["train"] == expected
    assert found["evaluation"] == 50000 * cost.forward_flops(8, 1, "imagenet", 3, 224, 1000)


def test_alignment_runs_add_the_scoring_of_each_scored_epoch():
    options = {"score_epochs": [1, 3], "iterations": 10, "probes": 20, "permuted": False}
    run = spec(rule="gd_wstar", rule_options=options)
    plain = cost.run_cost(spec(rule="gd_wstar", rule_options={**options, "score_epochs": []}))
    per_scoring = cost.scoring_flops(8, iterations=10, probes=20)
    layers = hand_count_cifar_width8_batch100()
    kernel_scores = sum(3 * 2 * 8 * 8 * 9 * c_in for c_in in (3, 8, 8, 8, 8, 8, 8))
    # per layer and iteration: the stacked conv (2 kernels) and two adjoints, each a layer pass on 20 probes
    assert per_scoring == sum(10 * 4 * unit // 100 * 20 for unit in layers) + kernel_scores
    assert cost.run_cost(run)["alignment"] == 2 * per_scoring
    assert cost.run_flops(run) == plain["total"] + 2 * per_scoring
    assert cost.run_cost(spec(rule="gd_wstar", rule_options={**options, "score_epochs": "all"}))["alignment"] == 3 * per_scoring


def test_the_add_task_counts_its_matmuls():
    run = RunSpec(dataset="add", rule="normal", width=16, lr=0.001, epochs=2, batch_size=50, seed=99,
                  data_options={"generator": "faithful", "data_seed": 99, "sequences": 400, "length": 100,
                                "train_size": 300, "precision": "float64"})
    per_sequence_step = 100 * (3 * 2 * 50 * 16 * 16 + 2 * 2 * 50 * 16 + 3 * 2 * 50 * 16)
    assert cost.rnn_step_flops("normal", 16)["total"] == per_sequence_step
    forward = 100 * (2 * 50 * 16 * 16 + 2 * 2 * 50 * 16)
    assert cost.run_flops(run) == 2 * (6 * per_sequence_step + 8 * forward)  # 6 steps; 2 + 6 eval batches


def test_format_flops():
    assert cost.format_flops(3.14e15) == "3.1 PFLOP"
    assert cost.format_flops(12.4e12) == "12.4 TFLOP"
    assert cost.format_flops(950) == "950.0 FLOP"


@pytest.mark.parametrize("name, options", [(r, {}) for r in CNN_RULES] + [("dfa", {"projection": "shared"})])
def test_the_count_equals_torchs_flop_counter_on_a_real_step(name, options):
    """FlopCounterMode counts every convolution (forward and convolution_backward, by output mask)
    and matmul that actually runs: an independent check of the pass counts."""
    net = ConvNet(NetSpec("cifar", 4, image_size=16))
    rule = build_rule(name, net, 99, **options)
    x = torch.rand(6, 3, 16, 16)
    y = F.one_hot(torch.arange(6) % 10, 10).float() - 0.1
    with FlopCounterMode(display=False) as counter:
        rule.pseudo_gradients(x, y)
    assert counter.get_total_flops() == cost.step_flops(name, 4, 6, image_size=16, rule_options=options)["total"]


@pytest.mark.parametrize("name", RNN_RULES)
def test_the_rnn_recurrent_count_equals_torchs_flop_counter(name):
    """The recurrent map is the RNN's only mm (the readout is a matrix-vector product and the input
    map a broadcast multiply, which FlopCounterMode does not count). Align-ada's released form skips
    the last step's current weight gradient, which the per-step count includes (documented)."""
    length, width = 7, 6
    rule = build_rule(name, AddRNN(width).double(), 99)
    x = torch.randint(0, 2, (50, length)).double()
    with FlopCounterMode(display=False) as counter:
        rule.pseudo_gradients(x, torch.rand(50, length, dtype=torch.float64))
    counted = cost.rnn_step_flops(name, width, 50, length)["recurrent"]
    skipped = 2 * 50 * width * width if name == "align_ada" else 0
    assert counter.get_total_flops() == counted - skipped


def test_gpu_hours_come_from_the_newest_gpu_measurement(tmp_path):
    def line(**row):
        return "throughput " + json.dumps({"card": "NVIDIA X", "device": "cuda", "precision": "fp32", **row})
    (tmp_path / "gpu-nvidia-x-2026-01-01.txt").write_text(line(rule="normal", width=64, tflops=1.0) + "\n")
    (tmp_path / "gpu-nvidia-x-2026-02-01.txt").write_text("\n".join([
        "== step time fp32 ==", line(rule="normal", width=64, tflops=10.0), line(rule="normal", width=512, tflops=40.0),
        line(rule="align_ada", width=512, tflops=30.0), line(rule="normal", width=512, tflops=99.0, precision="tf32")]))
    card, rates = cost.measured_throughput(tmp_path)
    assert card == "NVIDIA X" and rates[("normal", 512)] == 40.0  # the newest file, fp32 only
    assert cost.rate_for(rates, "align_ada", 256) == 30.0  # the rule's own, at the nearest width
    assert cost.rate_for(rates, "fa", 8) == 10.0  # Normal's where the rule was not measured
    assert cost.measured_throughput(tmp_path / "none") is None


def test_a_network_measured_on_its_own_is_priced_by_its_own_rates(tmp_path):
    def line(**row):
        return "throughput " + json.dumps({"card": "NVIDIA X", "device": "cuda", "precision": "fp32", **row})
    (tmp_path / "gpu-nvidia-x-2026-02-01.txt").write_text("\n".join([
        line(rule="normal", width=64, tflops=10.0), line(rule="normal", width=512, tflops=40.0),
        line(rule="normal", width=16, tflops=2.0, arch="resnet20"), line(rule="fa", width=64, tflops=5.0, arch="resnet20")]))
    _, rates = cost.measured_throughput(tmp_path)
    assert cost.rate_for(rates, "normal", 512) == 40.0 and cost.rate_for(rates, "normal", 512, "cifar") == 40.0
    assert cost.rate_for(rates, "fa", 64, "resnet20") == 5.0      # its own rows
    assert cost.rate_for(rates, "usf", 16, "resnet20") == 2.0     # its Normal's, not the CIFAR net's
    assert cost.rate_for(rates, "normal", 512, "mlp") == 40.0     # never measured: the CIFAR net's


def test_a_sweep_file_expands_to_its_runs():
    specs = grids.sweep_specs(grids.ROOT / "sweeps" / "fig8.yaml")
    assert [(s.dataset, s.width, s.epochs, s.rule_options["score_epochs"]) for s in specs] == [
        ("cifar10", 512, 300, "all"), ("kmnist", 512, 300, "all")]
    # Figure 8 scores every epoch with the permuted baseline: 300 scorings of 7 (CIFAR) or 3 layers
    assert cost.run_cost(specs[0])["alignment"] == 300 * cost.scoring_flops(512, permuted=True)
    assert cost.run_cost(specs[1])["alignment"] == 300 * cost.scoring_flops(512, "kmnist", 1, 28, permuted=True)
