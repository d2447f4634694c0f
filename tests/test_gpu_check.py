"""benchmarks/gpu_check.sh in its dry mode (--device cpu): the same steps as on a GPU machine, at
tiny sizes, so CI exercises the script a GPU session will run once."""
import json
import os
import subprocess
import sys
from pathlib import Path

from walign import cost

ROOT = Path(__file__).resolve().parents[1]
# in this order: what a short GPU lease must not lose comes first (the GPU tests, compiled against eager)
SECTIONS = ["device", "packages", "pytest -m cuda", "step time compiled tf32", "step time fp32", "step time tf32",
            "channels_last tf32", "one epoch", "step time compiled (more widths) tf32", "step time resnet20 fp32",
            "summary"]
# every CNN rule walign ships, the paper's and sign symmetry; gpu_check.sh times each of them
CNN_RULES = {"normal", "align_ada", "align_zero", "align_prop", "fa", "dfa", "last_layer", "sign_symmetry"}


def test_dry_run_writes_its_file_with_every_section(tmp_path):
    before = sorted((ROOT / "benchmarks" / "results").glob("*")) if (ROOT / "benchmarks" / "results").exists() else []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable, "WALIGN_GPU_CHECK_DIR": str(tmp_path)}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu"], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (written,) = tmp_path.glob("gpu-cpu-dryrun-*.txt")
    text = written.read_text()
    assert text.strip() == done.stdout.strip()  # the screen and the file hold the same
    positions = [text.index(f"\n== {name} ==\n") for name in SECTIONS]
    assert positions == sorted(positions)
    assert "torch " in text and "cuDNN" in text and "missing: none" in text
    assert "no CUDA device" in text  # the GPU tests were collected and skipped
    assert "tf32: no-op on cpu" in text
    rows = [json.loads(line.split(" ", 1)[1]) for line in text.splitlines() if line.startswith("throughput {")]
    resnet = [r for r in rows if r.get("arch") == "resnet20"]
    rows = [r for r in rows if "arch" not in r]
    assert {(r["rule"], r["precision"]) for r in rows} == {(r, p) for r in CNN_RULES for p in ("fp32", "tf32")}
    # every rule the ResNet serves, on it (DFA and Align-ada left out, said in one line)
    assert {r["rule"] for r in resnet} == CNN_RULES - {"dfa", "align_ada"} and {r["width"] for r in resnet} == {4}
    assert "# left out: align_ada, dfa (arch resnet20 lacks what they need)" in text
    assert all(r["width"] == 8 and r["tflops"] > 0 and r["device"] == "cpu" for r in rows)
    assert "| normal | 8 | fp32 |" in text and "| align_ada | 8 | fp32 |" in text and "random CIFAR-shaped" in text
    # Normal's and Align-ada's steps also ran compiled, beside eager, and stayed equal to it
    compiled = [line.split("|") for line in text.splitlines() if line.startswith("| 8 | ") and "| default |" in line]
    assert {row[2].strip() for row in compiled if row[5].strip() == "NCHW"} == {"normal", "align_ada"}
    # and in the channels_last layout
    assert {row[2].strip() for row in compiled if row[5].strip() == "NHWC"} == {"normal"}
    assert {row[6].strip() for row in compiled} == {"NHWC"}  # a compiled step on the CPU takes NHWC images
    assert all(float(row[12]) < 1e-5 for row in compiled)
    assert "skipped: no widths (COMPILE_WIDTHS_MORE)" in text
    assert f"all steps passed; written to {written}" in text
    # a CPU dry run is no GPU measurement: the sweep table does not take hours from it
    assert cost.measured_throughput(tmp_path) is None
    after = sorted((ROOT / "benchmarks" / "results").glob("*")) if (ROOT / "benchmarks" / "results").exists() else []
    assert after == before  # the dry run leaves the repository alone
