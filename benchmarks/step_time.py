#!/usr/bin/env python3
"""Time and memory of one training step for every CNN rule, as ratios to Normal (backprop).

    python benchmarks/step_time.py                       # CPU (or the GPU if there is one)
    python benchmarks/step_time.py --device cpu --widths 16 64 --rounds 5
    python benchmarks/step_time.py --device cuda --widths 64 256 512 --precision fp32 tf32 --throughput
    python benchmarks/step_time.py --device cpu --arch resnet20 --widths 16 32    # another network

One step = rule.pseudo_gradients on a batch of 100 CIFAR-shaped images + an SGD step, exactly
what the training loop does, on the paper's CIFAR network or the one ``--arch`` names (walign/archs/;
rules the network cannot serve are left out, with one line). All rules are timed in the same process, in interleaved rounds
(every rule once per round) so drift hits them alike. ms/step is the median over rounds; "x Normal"
is the median over rounds of the rule's time divided by Normal's in the same round, printed with
its range, which shows how much a shared machine moved the result. On a GPU
the clock is a pair of CUDA events and memory is torch's peak allocation during the steps. On a
CPU, memory is the peak resident-set growth of a fresh child process that builds the net and
rule and runs three steps (torch's CPU allocator keeps no statistics; Linux only).

``--precision`` times each listed mode of walign/precision.py (fp32: TF32 off; tf32; bf16:
autocast around the rule's step); ratios are to Normal at the same precision. TFLOP/s is the
step's exact convolution and matmul count (walign/cost.py) over its median time. ``--throughput``
also prints one ``throughput {json}`` line per row, which ``python -m walign.grids`` reads from
benchmarks/results/gpu-*.txt to turn a sweep's FLOPs into GPU-hours.

``--compile`` also times each rule's whole step (forward, pseudo-gradients, SGD update) as a
``compile=true`` run takes it (walign.compiled.CompiledStep; mode ``--compile-mode``, by default
``reduce-overhead`` on CUDA, which replays CUDA graphs, and ``default`` elsewhere), in rounds
interleaved with an eager copy of the same rule. It prints the seconds the first compiled call
took (the compile), compiled ms/step, its paired ratio to the same rule in eager mode, and the
largest parameter difference between the compiled and the eager copy after the same steps on
the same batch, over the largest parameter (both start from the same initialisation). A rule
that fails to compile is reported in one line and the others go on. ``--channels-last`` runs
both copies with NHWC images and conv weights, to see whether that layout pays on a GPU (the
"layout" column). The "compiled images" column names the layout the compiled step takes its
images in: NHWC on the CPU (CompiledStep converts them there; ``--compiled-layout nchw`` keeps
them as they are), and on CUDA as they come.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from walign import cost, precision  # noqa: E402
from walign.allocator import keep_freed_memory  # noqa: E402
from walign.compiled import CompiledStep, make_step, mode_for  # noqa: E402
from walign.archs import ARCHS, missing  # noqa: E402
from walign.datasets import DataShape  # noqa: E402
from walign.rules import RULES as REGISTRY, build_rule  # noqa: E402
from walign.train import make_optimizer  # noqa: E402

RULES = ["normal", "align_ada", "align_zero", "align_prop", "fa", "dfa", "last_layer", "sign_symmetry"]


LR = 0.1


ARCH = {"name": "cifar"}  # the network the steps run on (set by main, and in a child)
CIFAR = DataShape(0, 0, 0, 3, 32, 10, "cifar")


def make(rule_name, width, device, batch, channels_last=False):
    torch.manual_seed(0)
    net = ARCHS[ARCH["name"]].create(CIFAR, width, batch, "relu", "ntk", {}).to(device)
    rule = build_rule(rule_name, net, 99)
    opt = torch.optim.SGD(rule.params, lr=LR)
    x = torch.rand(batch, 3, 32, 32, device=device)
    if channels_last:  # NHWC images and conv weights (cuDNN's preferred layout on tensor cores)
        net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.nn.functional.one_hot(torch.arange(batch, device=device) % 10, 10).float() - 0.1
    return rule, opt, x, y


MODE = {"precision": "fp32"}  # the precision the steps run at (set per block by main, and in a child)


def step(rule, opt, x, y):
    with precision.autocast(MODE["precision"], x.device):
        grads = rule.pseudo_gradients(x, y).grads
    for p, g in zip(rule.params, grads):
        p.grad = g
    opt.step()


def time_compiled(rules, width, device, args):
    """Rows for each rule's step as ``compile=true`` runs it (walign.compiled.CompiledStep, with
    the tensor lr of walign.train.make_optimizer), timed in rounds interleaved with an eager copy
    of the same rule (walign.compiled.make_step, as ``compile=false`` runs it)."""
    autocast = lambda: precision.autocast(MODE["precision"], device)  # noqa: E731
    rows = []
    for r in rules:
        eager, comp = make(r, width, device, args.batch, args.channels_last), make(r, width, device, args.batch,
                                                                                 args.channels_last)
        eager_step = make_step(eager[0], eager[1], autocast)
        try:
            fn = CompiledStep(comp[0], make_optimizer("sgd", comp[0].params, LR, compiled=True), device, autocast,
                              mode=args.compile_mode, channels_last=COMPILED_LAYOUT[args.compiled_layout])
            fn(*comp[2:])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            print(f"# compile {r} width {width}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
            continue
        eager_step(*eager[2:])
        for _ in range(2):  # CUDA graphs are recorded on the first calls after compiling
            fn(*comp[2:])
            eager_step(*eager[2:])
        pairs = []
        for _ in range(args.rounds):
            c = timed(lambda: fn(*comp[2:]), device, args.steps)
            e = timed(lambda: eager_step(*eager[2:]), device, args.steps)
            pairs.append((c, e))
        scale = max(p.abs().max().item() for p in eager[0].params)
        diff = max((a - b).abs().max().item() for a, b in zip(comp[0].params, eager[0].params)) / scale
        ms = statistics.median(c for c, _ in pairs)
        ratio = [c / e for c, e in pairs]
        rows.append({"width": width, "rule": r, "precision": MODE["precision"], "mode": mode_for(device, args.compile_mode),
                     "channels_last": args.channels_last, "compiled_nhwc": args.channels_last or fn.channels_last,
                     "compile_s": fn.compile_seconds, "ms_per_step": ms, "eager_ms": statistics.median(e for _, e in pairs),
                     "compiled_ratio": statistics.median(ratio), "ratio_range": (min(ratio), max(ratio)),
                     "max_param_diff": diff})
        print_compiled(rows[-1])
        del eager, comp, fn, eager_step
    return rows


COMPILED_LAYOUT = {"auto": None, "nchw": False, "nhwc": True}  # --compiled-layout -> CompiledStep(channels_last=)

COMPILED_HEADER = ("# compiled steps (each beside an eager copy of the same rule, interleaved rounds):\n"
                   "| width | rule | precision | mode | layout | compiled images | compile s | eager ms | compiled ms | compiled / eager | (range) "
                   "| max param diff / max param |\n|---:|---|---|---|---|---|---:|---:|---:|---:|---:|---:|")


def print_compiled(x):
    """One row, as soon as it is measured (flushed), so a run cut short keeps what it measured."""
    print(f"| {x['width']} | {x['rule']} | {x['precision']} | {x['mode']} | {'NHWC' if x['channels_last'] else 'NCHW'} | {'NHWC' if x['compiled_nhwc'] else 'NCHW'} | {x['compile_s']:.1f} | {x['eager_ms']:.2f} "
          f"| {x['ms_per_step']:.2f} | {x['compiled_ratio']:.2f} | {x['ratio_range'][0]:.2f}-{x['ratio_range'][1]:.2f} "
          f"| {x['max_param_diff']:.1e} |", flush=True)


def timed(fn, device, steps):
    """Milliseconds per call over ``steps`` calls."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) * 1000 / steps


def gpu_peak_mb(rule_name, width, device, batch):
    torch.cuda.empty_cache()
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    rule, opt, x, y = make(rule_name, width, device, batch)
    for _ in range(3):
        step(rule, opt, x, y)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del rule, opt, x, y
    return peak / 2**20


def cpu_peak_mb(rule_name, width, batch, runs=1):
    """Median over ``runs`` fresh processes: glibc's arenas make one process's peak vary by ~10%."""
    peaks = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, __file__, "--child", rule_name, str(width), str(batch),
                              "--precision", MODE["precision"], "--arch", ARCH["name"]], capture_output=True, text=True,
                             check=True)
        peaks.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(peaks)


def _status_mb(key):
    with open("/proc/self/status") as f:
        return int(next(l.split()[1] for l in f if l.startswith(key + ":"))) / 1024


def child(rule_name, width, batch):
    """Peak RSS growth (MB) from just before building the net to after 3 steps (Linux: the
    high-water mark is reset through /proc/self/clear_refs so imports do not count)."""
    keep_freed_memory()  # as a CPU training run does (walign/app.py)
    torch.rand(1)  # torch fully loaded before the baseline
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_mb("VmRSS")
    rule, opt, x, y = make(rule_name, width, torch.device("cpu"), batch)
    for _ in range(3):
        step(rule, opt, x, y)
    print(_status_mb("VmHWM") - base)


def machine(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is kept")
    ap.add_argument("--rules", nargs="+", default=RULES)
    ap.add_argument("--arch", default="cifar", choices=sorted(n for n, a in ARCHS.items() if a.family == "cnn"),
                    help="the network (walign/archs/); default the paper's CIFAR net")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=precision.PRECISIONS)
    ap.add_argument("--memory", choices=["auto", "none"], default="auto",
                    help="none: skip the peak-memory measurement (the CPU's costs a process per rule)")
    ap.add_argument("--memory-runs", type=int, default=1,
                    help="CPU: processes per rule whose median peak is reported")
    ap.add_argument("--throughput", action="store_true", help="also print machine-readable throughput lines")
    ap.add_argument("--compile", action="store_true", help="also time every rule's step compiled by torch.compile")
    ap.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
                    help="torch.compile mode (default: reduce-overhead on CUDA, default elsewhere)")
    ap.add_argument("--channels-last", action="store_true",
                    help="conv weights and images in channels_last (NHWC) memory format, eager and compiled")
    ap.add_argument("--compiled-layout", choices=list(COMPILED_LAYOUT), default="auto",
                    help="images the compiled step takes: auto (CompiledStep's choice: NHWC on the CPU), nchw, nhwc")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_runs < 1:
        ap.error(f"--memory-runs must be at least 1, got {args.memory_runs}")
    ARCH["name"] = args.arch
    if args.child:
        MODE["precision"] = args.precision[0]
        precision.configure(MODE["precision"], "cpu")
        return child(args.child[0], int(args.child[1]), int(args.child[2]))
    device = torch.device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as a CPU training run does (walign/app.py)
    lacking = [r for r in args.rules if missing(ARCHS[args.arch], REGISTRY[r]["cnn"].needs)]
    rules = ["normal"] + [r for r in args.rules if r != "normal" and r not in lacking]
    net_name = "CIFAR 7-conv net" if args.arch == "cifar" else f"arch {args.arch} on CIFAR-shaped inputs"
    print(f"# step time and peak memory, batch {args.batch}, {net_name}")
    if lacking:
        print(f"# left out: {', '.join(lacking)} (arch {args.arch} lacks what they need)")
    print(f"# machine: {machine(device)}; torch {torch.__version__}; device {device}")
    if args.compile:
        print(COMPILED_HEADER)
    rows, compiled = [], []
    for mode in args.precision:
        MODE["precision"] = mode
        info = precision.configure(mode, device)
        if "precision_note" in info:
            print(f"# {mode}: {info['precision_note']}")
        for width in args.widths:
            built = {r: make(r, width, device, args.batch, args.channels_last) for r in rules}
            for r in rules:  # warm-up
                step(*built[r])
            times = {r: [] for r in rules}
            for _ in range(args.rounds):
                for r in rules:
                    times[r].append(timed(lambda: step(*built[r]), device, args.steps))
            del built
            for r in rules:
                ms = statistics.median(times[r])
                if args.memory == "none":
                    mb = float("nan")
                elif device.type == "cuda":
                    mb = gpu_peak_mb(r, width, device, args.batch)
                else:
                    mb = cpu_peak_mb(r, width, args.batch, args.memory_runs)
                flops = cost.step_flops(r, width, args.batch, arch=args.arch)["total"]
                rows.append({"width": width, "rule": r, "precision": mode, "ms_per_step": ms, "peak_mb": mb,
                             "flops_per_step": flops, "tflops": flops / (ms / 1000) / 1e12})
            base = next(x for x in rows if x["width"] == width and x["rule"] == "normal" and x["precision"] == mode)
            for x in rows:
                if x["width"] == width and x["precision"] == mode:
                    # paired: each round's time over Normal's in the same round, so a slow spell of a
                    # shared machine cancels out; the median and the range over rounds are kept
                    paired = [t / n for t, n in zip(times[x["rule"]], times["normal"])]
                    x["time_ratio"] = statistics.median(paired)
                    x["time_ratio_range"] = (min(paired), max(paired))
                    x["memory_ratio"] = x["peak_mb"] / base["peak_mb"] if base["peak_mb"] else float("nan")
            if args.compile:
                compiled += time_compiled(rules, width, device, args)
    print("| width | rule | precision | ms/step | x Normal | (range over rounds) | peak MB | x Normal | TFLOP/s |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
    def number(value, digits=1):
        return "—" if value != value else f"{value:.{digits}f}"  # NaN: not measured
    for x in rows:
        print(f"| {x['width']} | {x['rule']} | {x['precision']} | {x['ms_per_step']:.1f} | {x['time_ratio']:.2f} "
              f"| {x['time_ratio_range'][0]:.2f}-{x['time_ratio_range'][1]:.2f} "
              f"| {number(x['peak_mb'])} | {number(x['memory_ratio'], 2)} | {x['tflops']:.2f} |")
    if args.throughput:
        for x in rows:
            print("throughput " + json.dumps({"card": machine(device), "device": str(device), "precision": x["precision"],
                                              **({"arch": args.arch} if args.arch != "cifar" else {}),
                                              "rule": x["rule"], "width": x["width"],
                                              "ms_per_step": round(x["ms_per_step"], 3), "tflops": round(x["tflops"], 4)}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "torch": torch.__version__, "rows": rows, "compiled": compiled},
                      f, indent=2)


if __name__ == "__main__":
    main()
