"""What the image data sets share: classification summaries, the network (the paper's CNN for
``arch=auto``, any registered architecture otherwise), and its cost."""
from __future__ import annotations

from .base import DataSet
from .splits import CLASSIFICATION_KEYS, ImageSplits


class ImageDataSet(DataSet):
    """An image classification data set, learned by its own paper network or the one ``arch`` names."""
    family = "cnn"
    summary_keys = CLASSIFICATION_KEYS
    summarize = staticmethod(ImageSplits.summarize)

    @classmethod
    def build_net(cls, data, width: int, batch_size: int, arch: str, activation: str, parameterization: str,
                  arch_options: dict | None = None):
        from ..archs import entry
        from .base import DataShape
        shape = DataShape(0, 0, 0, data.in_channels, data.image_size, data.num_classes, data.arch)
        return entry(data.arch if arch == "auto" else arch).create(shape, width, batch_size, activation,
                                                                    parameterization, arch_options or {})

    @classmethod
    def flops(cls, spec) -> dict:
        from ..cost import cnn_run_cost
        shape = cls.shape(spec.data_options)
        if shape is None:
            raise NotImplementedError(f"dataset {cls.name} does not declare its shape, so its runs' cost is unknown")
        return cnn_run_cost(spec, shape)
