"""Data sets. Importing this package registers every data set in ``DATASETS``: walign's own (one
file each) and those of installed plugin packages (entry-point group ``walign.datasets``,
walign/plugins.py). See walign/datasets/base.py for what an entry declares."""
from .base import DATASETS, DataSet, DataShape, entry, load, register, result_keys  # noqa: F401
from .splits import Data, ImageSplits, LoadedData, LoaderSplit, Task, TensorSplit, accuracy  # noqa: F401
from . import add, cifar10, embedded, imagenet, kmnist  # noqa: F401  (register the data sets)
from ..plugins import load_entry_points

load_entry_points("walign.datasets")

__all__ = ["DATASETS", "DataSet", "DataShape", "ImageSplits", "LoadedData", "LoaderSplit", "TensorSplit", "accuracy",
           "entry", "load", "register", "result_keys"]
