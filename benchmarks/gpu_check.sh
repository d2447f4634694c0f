#!/usr/bin/env bash
# One command for a fresh GPU machine, after `pip install -e ".[test]"` (421 s on an H200 on
# 2026-12-04, when it timed fewer compiled steps than it does now):
#
#   bash benchmarks/gpu_check.sh                    # GPU: writes benchmarks/results/gpu-<card>-<date>.txt
#   bash benchmarks/gpu_check.sh --device cpu       # dry run: the same steps on the CPU, tiny sizes
#
# It prints the device and the torch, CUDA and cuDNN versions; names the missing optional
# packages (hydra-core, omegaconf, submitit) in one line and skips only what needs them; runs
# `pytest -m cuda` (tests/test_cuda.py, tests/test_cuda_compile.py and the GPU variants of
# tests/test_device_hygiene.py);
# times one step of every CNN rule at widths 64, 256 and 512 at fp32 and tf32 (ms/step, peak
# memory, ratio to Normal, achieved TFLOP/s from walign/cost.py's exact count; the `throughput`
# lines are what `python -m walign.grids` reads for GPU-hours); and times one whole CIFAR-shaped
# epoch (450 steps of 100 + evaluation) at width 512 for Normal and Align-ada, on CIFAR-10 if
# CIFAR10_ROOT names a folder holding cifar-10-batches-py, else on random CIFAR-shaped data (the
# output says which); times Normal's and Align-ada's step as compile=true runs it (torch.compile,
# CUDA graphs) beside eager at widths 64 and 512, fp32 and tf32 (COMPILE_WIDTHS, COMPILE_PRECISIONS),
# and again at widths 16 and 256 at the end (COMPILE_WIDTHS_MORE); tries the channels_last
# layout, eager and compiled, at widths 64 and 512, tf32 (LAYOUT_WIDTHS); and last times every
# rule's step on the ResNet-20 at widths 16, 32, 64, fp32 (RESNET_WIDTHS), whose throughput lines
# price runs on that network.
# The most wanted measurements come first (the GPU tests, then compiled against eager at widths 64
# and 512), so a run cut short by --budget keeps them. Everything goes to the screen and to one file.
#
# Options and environment:
#   --device cpu|cuda    cuda (default) or cpu, the dry run: width 8, one round, a 2-step epoch,
#                        no memory measurement; it checks the script, not the machine
#   --out DIR            where the file goes. Default: benchmarks/results for a GPU; for the dry run
#                        $WALIGN_GPU_CHECK_DIR, else a fresh temporary folder (never the repository)
#   --budget SECONDS     end every step by this many seconds after the start (a step cut short is
#                        marked FAILED and the file is still complete), for a lease of fixed length
#   PYTHON               the interpreter (default: python)
#   CIFAR10_ROOT         real CIFAR-10 for the epoch timing
#   PRECISIONS           step-time precisions (default "fp32 tf32"; add bf16 to time autocast too)
#   COMPILE_WIDTHS       widths of the first compiled-step timing (default "64 512"; dry run "8")
#   COMPILE_WIDTHS_MORE  widths of the last one (default "16 256"; dry run: none, the section says so)
#   COMPILE_PRECISIONS   its precisions (default "fp32 tf32"; dry run "tf32", and its layout trial
#                        times Normal only)
#   LAYOUT_WIDTHS        widths of the channels_last trial (default "64 512"; dry run "8")
#   RESNET_WIDTHS        widths of the last section, every rule's step on arch=resnet20 with throughput
#                        lines (default "16 32 64"; dry run "4")
# Exit status: 0 if every step passed, 1 otherwise (the file says which failed).
set -u -o pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
device=cuda
out=""
budget=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$device" in cpu|cuda) ;; *) echo "gpu_check: --device must be cpu or cuda, got $device" >&2; exit 2 ;; esac
case "$budget" in ''|*[!0-9]*) echo "gpu_check: --budget must be a whole number of seconds, got $budget" >&2; exit 2 ;; esac
started=$SECONDS

if [ "$device" = cuda ]; then
    if ! card=$("$PYTHON" -c 'import torch; assert torch.cuda.is_available(); print(torch.cuda.get_device_name(0))' 2>/dev/null); then
        echo "gpu_check: no CUDA device visible to torch; use --device cpu for a dry run" >&2
        exit 2
    fi
    slug=$(printf '%s' "$card" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-*//; s/-*$//')
    out=${out:-benchmarks/results}
    widths="64 256 512"; rounds=3; steps=5; memory=auto
    compile_widths=${COMPILE_WIDTHS:-64 512}
    compile_widths_more=${COMPILE_WIDTHS_MORE-16 256}
    layout_widths=${LAYOUT_WIDTHS:-64 512}
    compile_precisions=${COMPILE_PRECISIONS:-fp32 tf32}
    layout_rules="normal align_ada"
    resnet_widths=${RESNET_WIDTHS:-16 32 64}
    epoch_args=(--width 512)
else
    slug=cpu-dryrun
    out=${out:-${WALIGN_GPU_CHECK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")}}
    widths="8"; rounds=1; steps=1; memory=none
    compile_widths=${COMPILE_WIDTHS:-8}
    compile_widths_more=${COMPILE_WIDTHS_MORE-}
    layout_widths=${LAYOUT_WIDTHS:-8}
    compile_precisions=${COMPILE_PRECISIONS:-tf32}
    layout_rules="normal"
    resnet_widths=${RESNET_WIDTHS:-4}
    epoch_args=(--width 8 --train 200 --val 100 --test 100)
fi
mkdir -p "$out"
file="$out/gpu-$slug-$(date +%Y-%m-%d).txt"
[ -e "$file" ] && file="$out/gpu-$slug-$(date +%Y-%m-%d-%H%M%S).txt"
failed=()
section() { printf '\n== %s ==\n' "$1"; }
step() {  # step NAME COMMAND...: run it (within the budget, if one is set), note a failure, go on
    local name=$1; shift
    if [ "$budget" -gt 0 ]; then
        local left=$((budget - (SECONDS - started)))
        if [ "$left" -le 5 ]; then
            echo "gpu_check: FAILED: $name (not started: the ${budget}s budget is spent)"; failed+=("$name"); return
        fi
        set -- timeout --signal=TERM --kill-after=10 "$left" "$@"
    fi
    "$@" || { echo "gpu_check: FAILED: $name (exit $?)"; failed+=("$name"); }
}
compiled_steps() {  # compiled_steps TITLE WIDTHS: Normal's and Align-ada's compiled step beside eager
    local title=$1 compiled_widths=$2 precision
    for precision in $compile_precisions; do
        section "$title $precision"
        if [ -z "$compiled_widths" ]; then echo "skipped: no widths (COMPILE_WIDTHS_MORE)"; continue; fi
        # shellcheck disable=SC2086
        step "$title $precision" "$PYTHON" benchmarks/step_time.py --device "$device" --widths $compiled_widths \
            --rules normal align_ada --rounds "$rounds" --steps "$steps" --precision "$precision" --memory none \
            --compile
    done
}

checks() {
section "device"
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); host: $(hostname); mode: $device"
"$PYTHON" - "$device" <<'EOF'
import sys, platform, torch
device = sys.argv[1]
print(f"python {platform.python_version()}; torch {torch.__version__}; CUDA {torch.version.cuda}; "
      f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'n/a'}")
if device == "cuda":
    p = torch.cuda.get_device_properties(0)
    print(f"device: {p.name}; {p.total_memory / 2**30:.1f} GiB; compute capability {p.major}.{p.minor}; "
          f"{torch.cuda.device_count()} visible")
else:
    print(f"device: cpu ({torch.get_num_threads()} threads); dry run: sizes are tiny, timings mean nothing")
EOF

section "packages"
missing=$("$PYTHON" - <<'EOF'
import importlib.util
wanted = {"hydra-core": "hydra", "omegaconf": "omegaconf", "submitit": "submitit", "pytest": "pytest"}
print(" ".join(name for name, module in wanted.items() if importlib.util.find_spec(module) is None))
EOF
)
if [ -z "$missing" ]; then
    echo "missing: none"
else
    echo "missing: $missing (skipped: $( [[ " $missing " == *" pytest "* ]] && echo 'the GPU tests' || \
        echo 'the GPU tests that run main.py' ); submitit is needed only for launcher=local|slurm)"
fi

section "pytest -m cuda"
if [[ " $missing " == *" pytest "* ]]; then
    echo "skipped: pytest is not installed (pip install -e \".[test]\")"
elif [[ " $missing " == *" hydra-core "* || " $missing " == *" omegaconf "* ]]; then
    step "pytest -m cuda" "$PYTHON" -m pytest -o addopts=-ra -m cuda -q -p no:cacheprovider -k "not embedded_run and not killed_gpu_run"
else
    step "pytest -m cuda" "$PYTHON" -m pytest -o addopts=-ra -m cuda -q -p no:cacheprovider
fi

compiled_steps "step time compiled" "$compile_widths"

for precision in ${PRECISIONS:-fp32 tf32}; do
    section "step time $precision"
    # shellcheck disable=SC2086
    step "step time $precision" "$PYTHON" benchmarks/step_time.py --device "$device" --widths $widths \
        --rounds "$rounds" --steps "$steps" --precision "$precision" --memory "$memory" --throughput
done

section "channels_last tf32"
# shellcheck disable=SC2086
step "channels_last tf32" "$PYTHON" benchmarks/step_time.py --device "$device" --widths $layout_widths \
    --rules $layout_rules --rounds "$rounds" --steps "$steps" --precision tf32 --memory none \
    --compile --channels-last

section "one epoch"
step "one epoch" "$PYTHON" benchmarks/epoch_time.py --device "$device" --rules normal align_ada \
    "${epoch_args[@]}" ${CIFAR10_ROOT:+--root "$CIFAR10_ROOT"}

compiled_steps "step time compiled (more widths)" "$compile_widths_more"

section "step time resnet20 fp32"
# the ResNet's own rates, which plan=true and the SLURM packing use for runs on it (RESNET_WIDTHS)
# shellcheck disable=SC2086
step "step time resnet20 fp32" "$PYTHON" benchmarks/step_time.py --device "$device" --arch resnet20 \
    --widths $resnet_widths --rounds "$rounds" --steps "$steps" --precision fp32 --memory "$memory" --throughput

section "summary"
echo "wall: $((SECONDS - started)) s"
if [ ${#failed[@]} -eq 0 ]; then
    echo "all steps passed; written to $file"
else
    echo "failed: ${failed[*]}; written to $file"
fi
[ ${#failed[@]} -eq 0 ]
}

checks 2>&1 | tee "$file"  # the pipeline (pipefail) ends when tee has written everything
