"""Finding a data set's files on disk, and fetching them with torchvision's own download.

A data set read from ``dataset.root`` checks its files before anything is loaded, so missing data
is one line (a ConfigError) before a run or a sweep starts; a failed download leaves nothing behind.
"""
from __future__ import annotations

import os
import shutil

from ..errors import ConfigError


def missing(what: str, where: str, how: str) -> ConfigError:
    return ConfigError(f"{what} not found at {where}; {how}")


def find(what: str, folder: str, files: list[str], download: bool, dataset_class, root: str, how: str) -> None:
    """Make sure ``files`` are in ``folder``: fetched first with torchvision's own download of both
    splits into ``root`` when ``download`` is set; a one-line ConfigError if they are not there.
    A download that fails leaves nothing behind: whatever it created under ``root`` is removed."""
    def present():
        return all(os.path.isfile(os.path.join(folder, name)) for name in files)
    if download and not present():
        existed = os.path.isdir(root)
        before = set(os.listdir(root)) if existed else set()
        try:
            for train in (True, False):
                dataset_class(root, train=train, download=True)
        except Exception as err:  # no network, a proxy, a full disk, a bad checksum
            remove_new(root, existed, before)
            reason = (str(err).strip().splitlines() or [""])[0]
            raise ConfigError(f"{what} download into {root} failed: {type(err).__name__}: {reason}") from None
    if not present():
        raise missing(what, folder, how)


def remove_new(root: str, existed: bool, before: set) -> None:
    """Undo a failed download: ``root`` itself if it did not exist, else the entries it gained."""
    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in set(os.listdir(root)) - before:
        target = os.path.join(root, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            try:
                os.unlink(target)
            except OSError:
                pass
