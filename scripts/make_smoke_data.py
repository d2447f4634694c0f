#!/usr/bin/env python3
"""Write small SYNTHETIC stand-ins for CIFAR-10, KMNIST and ImageNet, for rehearsals only.

    python scripts/make_smoke_data.py DEST

Why: a cluster submission should be rehearsed end to end (configuration, data paths, launcher,
result layout, report) on a laptop or a login node before any GPU hours are spent, and that
rehearsal needs files in the very formats walign reads, without the real data sets at hand.
After this script:

    python main.py -m sweeps=paper scale=smoke data_root=DEST verify_md5.cifar10=false

DEST receives one folder per data set, where walign looks for it (``<data_root>/<folder>``):

  cifar10/cifar-10-batches-py/   torchvision's python batches: data_batch_1..5 (1040 images each:
                                 the loader's 5000 validation + 200 training) and test_batch (200);
                                 their md5 sums are not the real ones, hence verify_md5.cifar10=false
  kmnist/KMNIST/raw/             the four uncompressed idx files: 5200 training (5000 validation +
                                 200 training) and 200 test images, 28 x 28 grey
  imagenet/{train,val}/<class>/  ImageFolder trees of 64 x 64 RGB PNGs: 10 classes n00000000..
                                 n00000009, 12 training and 4 validation images per class

The pixels are noise around a per-class mean colour (or grey level), so a tiny network can learn a
little, and the labels cycle 0..9, so every prefix of a split is balanced. Everything comes from
fixed seeds and the PNGs carry no timestamps: two runs write byte-identical files. Every folder
gets a SYNTHETIC.txt: accuracies measured on these files mean nothing. A data set folder that
already exists without that marker (perhaps the real data) is never written into.
"""
from __future__ import annotations

import argparse
import os
import pickle
import struct
import sys

import numpy as np
from PIL import Image

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
N_TRAIN, N_TEST = 5200, 200  # CIFAR-10 and KMNIST: the loaders keep the first 5000 training images for validation
CIFAR_BATCHES = 5
IMAGENET_CLASSES, IMAGENET_TRAIN, IMAGENET_VAL, IMAGENET_SIZE = 10, 12, 4, 64
FOLDERS = ("cifar10", "kmnist", "imagenet")
NOTICE = ("SYNTHETIC DATA, NOT THE REAL DATA SET.\n"
          "Written by scripts/make_smoke_data.py: noise around a per-class mean colour, from fixed seeds.\n"
          "It exists only to rehearse a submission (paths, formats, launcher, report) before spending\n"
          "GPU hours. Accuracies and losses measured on it mean nothing.\n")


def labels(n: int) -> np.ndarray:
    """0, 1, ..., 9, 0, 1, ...: every prefix of length 10k holds k images of each class."""
    return np.arange(n) % 10


def images(rng: np.random.RandomState, y: np.ndarray, means: np.ndarray, shape: tuple) -> np.ndarray:
    """uint8 images of ``shape`` (channels first): the class's mean per channel plus Gaussian noise."""
    noise = rng.normal(0.0, 45.0, size=(len(y),) + shape)
    centre = means[y].reshape((len(y), shape[0]) + (1,) * (len(shape) - 1))
    return np.clip(np.round(centre + noise), 0, 255).astype(np.uint8)


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def mark(folder: str, what: str) -> None:
    write(os.path.join(folder, "SYNTHETIC.txt"), (NOTICE + what + "\n").encode())


def make_cifar10(dest: str) -> str:
    folder = os.path.join(dest, "cifar10", "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(10)
    means = rng.randint(40, 216, size=(10, 3)).astype(float)
    per_batch = N_TRAIN // CIFAR_BATCHES
    parts = [(f"data_batch_{i + 1}", labels(N_TRAIN)[i * per_batch:(i + 1) * per_batch]) for i in range(CIFAR_BATCHES)]
    for name, y in parts + [("test_batch", labels(N_TEST))]:
        x = images(rng, y, means, (3, 32, 32)).reshape(len(y), 3072)  # rows: red, green, blue planes
        batch = {"batch_label": f"synthetic {name}", "data": x, "labels": [int(c) for c in y],
                 "filenames": [f"synthetic_{name}_{i:04d}.png" for i in range(len(y))]}
        # protocol 4 stores the pixels as raw bytes (protocol 2, the original files', would inflate
        # them by half); torchvision reads either with pickle.load(encoding="latin1")
        write(os.path.join(folder, name), pickle.dumps(batch, protocol=4))
    meta = {"label_names": CIFAR_NAMES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    write(os.path.join(folder, "batches.meta"), pickle.dumps(meta, protocol=4))
    mark(os.path.join(dest, "cifar10"), "This folder: a synthetic CIFAR-10 (cifar-10-batches-py); "
         "read it with verify_md5.cifar10=false.")
    return f"cifar10: {CIFAR_BATCHES} x {per_batch} training + {N_TEST} test images, 32x32 RGB, in {folder}"


def idx(array: np.ndarray, magic: int) -> bytes:
    """An uncompressed idx file: big-endian magic number and sizes, then the uint8 values."""
    return struct.pack(">i", magic) + b"".join(struct.pack(">i", n) for n in array.shape) + array.tobytes()


def make_kmnist(dest: str) -> str:
    folder = os.path.join(dest, "kmnist", "KMNIST", "raw")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(20)
    means = np.linspace(30, 225, 10)[rng.permutation(10)][:, None]  # one grey level per class
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        y = labels(n)
        x = images(rng, y, means, (1, 28, 28))[:, 0]
        write(os.path.join(folder, f"{prefix}-images-idx3-ubyte"), idx(x, 0x0803))
        write(os.path.join(folder, f"{prefix}-labels-idx1-ubyte"), idx(y.astype(np.uint8), 0x0801))
    mark(os.path.join(dest, "kmnist"), "This folder: a synthetic KMNIST (KMNIST/raw, idx files).")
    return f"kmnist: {N_TRAIN} training + {N_TEST} test images, 28x28 grey, in {folder}"


def make_imagenet(dest: str) -> str:
    root = os.path.join(dest, "imagenet")
    rng = np.random.RandomState(30)
    means = rng.randint(40, 216, size=(IMAGENET_CLASSES, 3)).astype(float)
    for split, per_class in (("train", IMAGENET_TRAIN), ("val", IMAGENET_VAL)):
        y = labels(IMAGENET_CLASSES * per_class)
        x = images(rng, y, means, (3, IMAGENET_SIZE, IMAGENET_SIZE)).transpose(0, 2, 3, 1)
        for i, (pixels, c) in enumerate(zip(x, y)):
            folder = os.path.join(root, split, f"n{c:08d}")
            os.makedirs(folder, exist_ok=True)
            # PIL writes no time stamp into a PNG unless asked: the bytes depend on the pixels only
            Image.fromarray(pixels, "RGB").save(os.path.join(folder, f"synthetic_{split}_{i:04d}.png"), "PNG")
    mark(root, "This folder: a synthetic ImageNet (ImageFolder trees train/ and val/ of PNGs).")
    return (f"imagenet: {IMAGENET_CLASSES} classes, {IMAGENET_CLASSES * IMAGENET_TRAIN} training + "
            f"{IMAGENET_CLASSES * IMAGENET_VAL} validation PNGs, {IMAGENET_SIZE}x{IMAGENET_SIZE} RGB, in {root}")


def fail(message: str) -> None:
    print(f"make_smoke_data.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write small synthetic stand-ins for CIFAR-10, KMNIST and "
                                     "ImageNet in walign's on-disk formats, for rehearsing a submission.")
    parser.add_argument("dest", metavar="DEST", help="folder to write into (created if missing); "
                        "then run walign with data_root=DEST verify_md5.cifar10=false")
    dest = parser.parse_args(argv).dest
    if os.path.exists(dest) and not os.path.isdir(dest):
        fail(f"DEST {dest} is an existing file, not a folder")
    for name in FOLDERS:
        folder = os.path.join(dest, name)
        if os.path.exists(folder) and not os.path.isfile(os.path.join(folder, "SYNTHETIC.txt")):
            fail(f"{folder} already exists and is not synthetic data written by this script (no "
                 "SYNTHETIC.txt); it may be the real data set, so nothing was written: choose another DEST")
    try:
        os.makedirs(dest, exist_ok=True)
        mark(dest, "This folder: synthetic cifar10/, kmnist/ and imagenet/ for walign's data_root.")
        for make in (make_cifar10, make_kmnist, make_imagenet):
            print(make(dest))
    except OSError as err:
        fail(f"cannot write under {dest}: {err}")
    print(f"All of the above is SYNTHETIC data for rehearsals (see {os.path.join(dest, 'SYNTHETIC.txt')}): "
          "numbers measured on it mean nothing.")


if __name__ == "__main__":
    main()
