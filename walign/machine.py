"""What a run needs from the machine it is launched on: a device torch has here, and a results
directory it can write. Both are checked before anything is written, so a wrong device or a full
or read-only disk is one line (a ConfigError) and not a traceback halfway through a sweep."""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import torch

from .errors import ConfigError

PROBE_BYTES = 64 * 1024  # a full disk still lets an empty file be created: the probe writes this much


def parse_device(name: str) -> torch.device | None:
    """torch's own reading of a device string ('auto' -> None); ConfigError if it has none."""
    if name == "auto":
        return None
    try:
        return torch.device(name)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ConfigError(f"device {name!r} is not a device torch knows "
                          f"({str(err).splitlines()[0]}); use auto, cpu, cuda or cuda:N") from None


def resolve_device(name: str) -> torch.device:
    """The device ``name`` means on this machine; ConfigError if it is not here."""
    device = parse_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            why = f"CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else \
                ("this torch build has no CUDA" if torch.version.cuda is None else "no GPU or driver is visible")
            raise ConfigError(f"device {name} requested but CUDA is not available here ({why}); use device=auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        backend = getattr(torch.backends, device.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise ConfigError(f"device {name} is not available here; use device=auto, cpu or cuda[:N]")
    return device


def check_torchvision() -> None:
    """torchvision must be the build made for this torch: a torchvision from another release (pip
    upgraded one of the pair) fails on import deep in its C++ operators ('operator
    torchvision::nms does not exist'). ConfigError, one line, naming both and the fix."""
    try:
        import torchvision  # noqa: F401
    except Exception as err:
        from importlib.metadata import PackageNotFoundError, version
        try:
            installed = f"torchvision {version('torchvision')}"
        except PackageNotFoundError:
            installed = "torchvision"
        last = ([line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__])[-1]
        raise ConfigError(f"{installed} does not work with torch {torch.__version__} ({last}): the two must come "
                          f"from one PyTorch release; install the torchvision made for torch "
                          f"{torch.__version__.split('+')[0]} (https://pytorch.org/get-started/previous-versions "
                          f"lists the pairs)") from None


def check_results_dir(results_dir: str) -> None:
    """results_dir must be a directory walign can write files in; checked by writing (and
    removing) a temporary file of PROBE_BYTES in it or in its nearest existing parent, so a
    read-only or a full disk is refused before anything (Hydra's folders included) is written."""
    path = Path(results_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"results_dir {results_dir} is a file, not a directory")
    probe_in = path
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise ConfigError(f"results_dir {results_dir} cannot be created: {probe_in} is a file")
    try:
        fd, name = tempfile.mkstemp(prefix=".walign-probe-", dir=probe_in)
        try:
            os.write(fd, bytes(PROBE_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        where = "" if probe_in == path else f" (its parent {probe_in} is where it would be created)"
        raise ConfigError(f"results_dir {results_dir} is not writable{where}: {err.strerror or err}") from None


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU host, its thread count and the vector instruction set torch's
    kernels use (summary.json's ``device``). The instruction set is there because it changes
    float32 results: AVX2 and AVX-512 kernels sum in different orders, and over 150 epochs at a
    large lr that can move a small-data run's best accuracy by points (docs/results.md)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({socket.gethostname()}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"
