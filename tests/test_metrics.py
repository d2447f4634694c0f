"""The numbers a run records, checked against values worked out by hand: top-1 accuracy from
hand-made logits, the per-epoch evaluation, the run summary (best epoch, final epoch), the Add
task's losses and their minima. Fast (no training): scripts/mutation.py runs these against
mutated copies of walign (docs/contributing.md)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from walign.datasets.add import AddTask
from walign.datasets.splits import CLASSIFICATION_KEYS, ImageSplits, TensorSplit, accuracy
from walign.rnn import sequence_loss
from walign.runs import best

# Five examples of three classes. Example i's input is the number i; the net below answers with
# row i. By hand: the largest logit is class 0, 1, 2, 2, 1 -> right for examples 0, 1, 2 (3 of 5);
# the smallest is class 2, 0, 1, 1, 0 -> right for examples 3 and 4 (2 of 5).
LOGITS = torch.tensor([[3.0, 1.0, 0.0],
                       [0.0, 2.0, 1.0],
                       [1.0, 0.0, 4.0],
                       [0.5, 0.0, 0.9],
                       [0.0, 5.0, 2.0]])
LABELS = torch.tensor([0, 1, 2, 1, 0])
RIGHT = [True, True, True, False, False]   # argmax == label, by hand


class LookUp(torch.nn.Module):
    """A 'network' whose output for input i is LOGITS[i] (with one parameter, as accuracy reads
    the device from it); it records each batch it is given."""

    def __init__(self, logits=LOGITS):
        super().__init__()
        self.logits = logits
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []

    def forward(self, x):
        rows = x[:, 0].long()
        self.seen.append(rows.tolist())
        return self.logits[rows] + 0 * self.anchor


def split(n=5, labels=LABELS) -> TensorSplit:
    return TensorSplit(torch.arange(n, dtype=torch.float64)[:, None], labels[:n])


def drawn(seed: int, n: int, batch_size: int) -> list[int]:
    """The examples an evaluation visits: numpy's permutation, cut to whole batches."""
    order = np.random.RandomState(seed).permutation(n)
    return order[:(n // batch_size) * batch_size].tolist()


# ----------------------------------------------------------------------------- accuracy
def test_accuracy_counts_examples_whose_largest_logit_is_the_label():
    assert accuracy(LookUp(), split(), 5, np.random.RandomState(0)) == pytest.approx(3 / 5)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_accuracy_over_several_batches_counts_only_the_whole_batches_drawn(seed):
    """Batch size 2 of 5 examples: two batches, 4 examples, which ones the permutation says."""
    net = LookUp()
    visited = drawn(seed, 5, 2)
    want = sum(RIGHT[i] for i in visited) / len(visited)
    assert accuracy(net, split(), 2, np.random.RandomState(seed)) == pytest.approx(want)
    assert [i for batch in net.seen for i in batch] == visited
    assert all(len(batch) == 2 for batch in net.seen)


def test_accuracy_differs_between_permutations_that_visit_different_examples():
    """Seeds 0 and 1 leave out different examples (by the numpy permutations), so the values differ."""
    values = {}
    for seed in range(6):
        visited = drawn(seed, 5, 2)
        values[seed] = (sum(RIGHT[i] for i in visited) / 4, accuracy(LookUp(), split(), 2, np.random.RandomState(seed)))
    assert all(got == pytest.approx(want) for want, got in values.values())
    assert len({want for want, _ in values.values()}) > 1


def test_image_batches_come_out_as_floats_over_255():
    images = torch.tensor([[0], [51], [255]], dtype=torch.uint8)     # 51 / 255 = 0.2
    (x, y), = TensorSplit(images, torch.tensor([0, 1, 2])).batches(np.random.RandomState(0), 3)
    order = np.random.RandomState(0).permutation(3)
    assert x.dtype == torch.float32 and y.tolist() == order.tolist()
    assert torch.allclose(x[:, 0], torch.tensor([[0.0, 0.2, 1.0][i] for i in order]), rtol=0, atol=1e-7)


def test_accuracy_of_a_split_smaller_than_one_batch_is_none():
    assert accuracy(LookUp(), split(), 6, np.random.RandomState(0)) is None


def test_accuracy_does_not_build_a_graph():
    """Evaluation runs without gradients: the outputs the net gives there do not require grad."""
    outputs = []

    class Spy(LookUp):
        def forward(self, x):
            out = super().forward(x)
            outputs.append(out)
            return out

    accuracy(Spy(), split(), 5, np.random.RandomState(0))
    assert outputs and not any(o.requires_grad for o in outputs)


def test_evaluate_draws_validation_batches_from_the_training_stream_and_test_ones_from_their_own():
    """Validation on examples 0-4 (labels LABELS), test on the same inputs with every label
    shifted by one class, so the two splits give different accuracies."""
    shifted = (LABELS + 1) % 3
    data = ImageSplits("hand", train=split(), val=split(), test=split(labels=shifted), num_classes=3, in_channels=1,
                image_size=1, arch="cifar")
    right_test = [bool(LOGITS[i].argmax() == shifted[i]) for i in range(5)]   # by hand: examples 3 and 4
    assert right_test == [False, False, False, True, True]
    got = data.evaluate(LookUp(), 2, np.random.RandomState(3), np.random.RandomState(4))
    val_seen, test_seen = drawn(3, 5, 2), drawn(4, 5, 2)
    assert got == {"val_acc": pytest.approx(sum(RIGHT[i] for i in val_seen) / 4),
                   "test_acc": pytest.approx(sum(right_test[i] for i in test_seen) / 4)}
    skipped = data.evaluate(LookUp(), 5, np.random.RandomState(3), np.random.RandomState(4), eval_test=False)
    assert skipped == {"val_acc": pytest.approx(3 / 5), "test_acc": None}
    data.test = None
    assert data.evaluate(LookUp(), 5, np.random.RandomState(3), np.random.RandomState(4))["test_acc"] is None


def test_targets_are_one_hot_less_the_offset():
    data = ImageSplits("hand", split(), split(), None, 3, 1, 1, "cifar", label_offset=0.1)
    want = torch.tensor([[0.9, -0.1, -0.1], [-0.1, -0.1, 0.9]])
    assert torch.allclose(data.targets(torch.tensor([0, 2])), want)


# ----------------------------------------------------------------------------- the run summary
# Four epochs whose best validation accuracy is epoch 2, not the last; the test accuracy peaks at
# epoch 3. Expected values read off the table by eye.
RECORDS = [
    {"epoch": 1, "train_loss": 0.9, "val_acc": 0.20, "test_acc": 0.21, "seconds": 1.0},
    {"epoch": 2, "train_loss": 0.7, "val_acc": 0.55, "test_acc": 0.50, "seconds": 1.0},
    {"epoch": 3, "train_loss": 0.6, "val_acc": 0.40, "test_acc": 0.60, "seconds": 1.0},
    {"epoch": 4, "train_loss": 0.5, "val_acc": 0.35, "test_acc": 0.30, "seconds": 1.0},
]


def test_summary_takes_the_best_epoch_not_the_last():
    assert ImageSplits.summarize(RECORDS) == {
        "best_val_acc": 0.55, "best_val_epoch": 2, "final_val_acc": 0.35, "test_acc_at_best_val": 0.50,
        "best_test_acc": 0.60, "final_test_acc": 0.30, "final_train_loss": 0.5}


def test_summary_ties_go_to_the_earliest_epoch_and_nan_epochs_are_skipped():
    records = [dict(r) for r in RECORDS]
    records[3]["val_acc"] = 0.55                      # ties epoch 2
    records[0]["val_acc"] = float("nan")              # a diverged evaluation never wins
    out = ImageSplits.summarize(records)
    assert (out["best_val_acc"], out["best_val_epoch"], out["test_acc_at_best_val"]) == (0.55, 2, 0.50)


def test_summary_without_test_accuracy_or_records():
    records = [{**r, "test_acc": None} for r in RECORDS]
    out = ImageSplits.summarize(records)
    assert out["best_test_acc"] is None and out["final_test_acc"] is None and out["test_acc_at_best_val"] is None
    assert out["best_val_acc"] == 0.55 and out["best_val_epoch"] == 2
    assert ImageSplits.summarize([]) == dict.fromkeys(CLASSIFICATION_KEYS)
    # every epoch's validation failed: no best epoch, the final values still recorded
    blank = ImageSplits.summarize([{**r, "val_acc": None} for r in RECORDS])
    assert blank["best_val_acc"] is None and blank["best_val_epoch"] is None and blank["final_train_loss"] == 0.5


def test_best_is_the_largest_finite_number():
    records = [{"a": 0.3}, {"a": float("nan")}, {"a": None}, {"b": 9.0}, {"a": "0.9"}, {"a": 0.7}, {"a": 2}]
    assert best(records, "a") == 2
    assert best(records[:-1], "a") == 0.7
    assert best([{"a": float("nan")}, {"a": None}], "a") is None
    assert best([], "a") is None
    assert best([{"a": -3.0}, {"a": -1.5}], "a") == -1.5


# ----------------------------------------------------------------------------- Add task
def test_sequence_loss_is_the_sum_over_time_of_the_batch_mean_square():
    out = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    target = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    # squared errors: row 0 -> 1, 4, 0; row 1 -> 0, 1, 4; batch means 0.5, 2.5, 2; summed 5
    assert sequence_loss(out, target).item() == pytest.approx(5.0)


class Constant(torch.nn.Module):
    """Predicts the same value ``c`` at every time step of every sequence."""

    def __init__(self, c):
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(float(c), dtype=torch.float64))

    def forward(self, x):
        return torch.zeros_like(x) + self.c


def test_add_evaluation_is_the_mean_batch_loss_of_each_split():
    """Targets are constant per sequence (train: 0, 1, 2, 3; test: 5, 7), so with a constant
    prediction c each batch's loss is (length) x the batch mean of (c - target)^2."""
    length = 3
    train = TensorSplit(torch.zeros(4, length, dtype=torch.float64),
                        torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)[:, None].repeat(1, length))
    test = TensorSplit(torch.zeros(2, length, dtype=torch.float64),
                       torch.tensor([5.0, 7.0], dtype=torch.float64)[:, None].repeat(1, length))
    task = AddTask(train, test)
    rng = np.random.RandomState(0)
    got = task.evaluate(Constant(1.0), 2, rng, np.random.RandomState(5))
    # whole splits are visited whatever the order: the mean of per-example squared errors, times length
    assert got["test_loss"] == pytest.approx(length * ((1 - 5) ** 2 + (1 - 7) ** 2) / 2)
    assert got["eval_train_loss"] == pytest.approx(length * (1 + 0 + 1 + 4) / 4)
    # both permutations came from the training stream (test first, then train), none from test_rng
    expected = np.random.RandomState(0)
    expected.permutation(2), expected.permutation(4)
    assert rng.randint(2**31) == expected.randint(2**31)


def test_add_evaluation_leaves_the_batch_order_of_a_partial_last_batch_out():
    """Five training sequences in batches of two: the one the permutation puts last is not evaluated."""
    targets = torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0], dtype=torch.float64)[:, None]
    train = TensorSplit(torch.zeros(5, 1, dtype=torch.float64), targets)
    test = TensorSplit(torch.zeros(2, 1, dtype=torch.float64), torch.zeros(2, 1, dtype=torch.float64))
    rng = np.random.RandomState(11)
    got = AddTask(train, test).evaluate(Constant(0.0), 2, rng, None)
    mirror = np.random.RandomState(11)
    mirror.permutation(2)
    kept = mirror.permutation(5)[:4]
    assert got["eval_train_loss"] == pytest.approx(np.mean([float(targets[i, 0]) ** 2 for i in kept]))
    assert got["test_loss"] == 0.0


def add_records(pairs):
    return [{"epoch": e, "train_loss": 0.0, "eval_train_loss": tr, "test_loss": te} for e, (tr, te) in enumerate(pairs, 1)]


def test_add_summary_keeps_the_minimum_finite_losses_and_their_epochs():
    records = add_records([(0.9, 0.8), (0.4, 0.6), (0.5, 0.3), (float("nan"), float("inf")), (None, None)])
    assert AddTask.summarize(records) == {"min_train_loss": 0.4, "min_train_epoch": 2, "min_test_loss": 0.3,
                                          "min_test_epoch": 3, "final_train_loss": None, "final_test_loss": None}
    tied = AddTask.summarize(add_records([(0.5, 0.2), (0.5, 0.2), (0.6, 0.7)]))
    assert (tied["min_train_epoch"], tied["min_test_epoch"]) == (1, 1)
    assert (tied["final_train_loss"], tied["final_test_loss"]) == (0.6, 0.7)
    assert AddTask.summarize([]) == {"min_train_loss": None, "min_train_epoch": None, "min_test_loss": None,
                                     "min_test_epoch": None, "final_train_loss": None, "final_test_loss": None}
    nothing = AddTask.summarize(add_records([(float("nan"), 0.1)]))
    assert nothing["min_train_loss"] is None and nothing["min_train_epoch"] is None
    assert nothing["final_train_loss"] != nothing["final_train_loss"] and nothing["min_test_loss"] == 0.1
