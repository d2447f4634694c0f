#!/usr/bin/env python3
"""Wall time of one whole CIFAR-10-shaped training epoch (training steps plus the evaluation), per rule.

    python benchmarks/epoch_time.py --device cuda --width 512 --rules normal align_ada
    python benchmarks/epoch_time.py --root /data ...      # real CIFAR-10 if ROOT holds it
    python benchmarks/epoch_time.py --device cpu --width 8 --train 200 --val 100 --test 100   # a dry run

The epoch is walign.train.train's, exactly as a run does it: 45 000 training images in 450 steps
of 100, then the 5000 validation and 10 000 test images (Figure 7 times this, without the test
split). The images live on the device as in a run. Without ``--root`` they are random
CIFAR-shaped bytes, which cost the same as real ones: nothing in a step depends on the pixel
values' statistics. The output says which it used. Before the timed epoch each rule runs one
short warm-up epoch (CUDA context, cuDNN algorithm choice, allocator). TFLOP/s is the epoch's
exact convolution and matmul count (walign/cost.py) over its seconds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from walign import cost, precision  # noqa: E402
from walign.datasets import ImageSplits, TensorSplit  # noqa: E402
from walign.nets import ConvNet, NetSpec  # noqa: E402
from walign.rules import build_rule  # noqa: E402
from walign.train import TrainConfig, TrainState, train  # noqa: E402


def cifar_shaped(device, sizes, root=None) -> tuple[ImageSplits, str]:
    """Real CIFAR-10 (the first ``sizes`` of each split) if ``root`` holds it, else random bytes."""
    if root and (Path(root) / "cifar-10-batches-py").is_dir():
        from walign.datasets.cifar10 import load_cifar10
        data = load_cifar10(root, device, verify_md5=False)
        for name, n in zip(("train", "val", "test"), sizes):
            split = getattr(data, name)
            setattr(data, name, TensorSplit(split.inputs[:n], split.labels[:n], device))
        return data, f"CIFAR-10 from {root}"
    g = torch.Generator().manual_seed(0)

    def split(n):
        return TensorSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                           torch.randint(0, 10, (n,), generator=g), device)
    return ImageSplits("random", *(split(n) for n in sizes), 10, 3, 32, "cifar"), "random CIFAR-shaped data"


def epoch_seconds(rule_name, width, data, batch, mode, device) -> float:
    torch.manual_seed(0)
    rule = build_rule(rule_name, ConvNet(NetSpec("cifar", width)).to(device), 99)
    seconds = []
    state = TrainState(rule, TrainConfig(1, 0.01, batch, eval_test=data.test is not None))
    train(state, data, lambda record: seconds.append(record["seconds"]),
          autocast=lambda: precision.autocast(mode, device))
    return seconds[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--rules", nargs="+", default=["normal", "align_ada"])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--train", type=int, default=45000, help="training images (45 000: the CIFAR-10 split)")
    ap.add_argument("--val", type=int, default=5000)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--precision", default="fp32", choices=precision.PRECISIONS)
    ap.add_argument("--root", help="a folder holding cifar-10-batches-py; random data without it")
    args = ap.parse_args()
    device = torch.device(args.device)
    info = precision.configure(args.precision, device)
    data, source = cifar_shaped(device, (args.train, args.val, args.test), args.root)
    warm, _ = cifar_shaped(device, (2 * args.batch, args.batch, args.batch))
    steps = args.train // args.batch
    images = (args.val // args.batch + args.test // args.batch) * args.batch
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"# one epoch: {steps} steps of {args.batch}, then {images} evaluated images; {source}")
    print(f"# machine: {name}; torch {torch.__version__}; width {args.width}; precision {args.precision}"
          + (f" ({info['precision_note']})" if "precision_note" in info else ""))
    print("| rule | width | precision | epoch s | ms/step (incl. eval) | TFLOP/s |")
    print("|---|---:|---|---:|---:|---:|")
    for rule_name in args.rules:
        epoch_seconds(rule_name, args.width, warm, args.batch, args.precision, device)
        seconds = epoch_seconds(rule_name, args.width, data, args.batch, args.precision, device)
        flops = (steps * cost.step_flops(rule_name, args.width, args.batch)["total"]
                 + images * cost.forward_flops(args.width, 1))
        print(f"| {rule_name} | {args.width} | {args.precision} | {seconds:.2f} | {1000 * seconds / steps:.1f} "
              f"| {flops / seconds / 1e12:.2f} |", flush=True)


if __name__ == "__main__":
    main()
