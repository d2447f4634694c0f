"""What the image data sets share: classification summaries, the paper's CNN, and its cost."""
from __future__ import annotations

from .base import DataSet
from .splits import CLASSIFICATION_KEYS, Data


class ImageDataSet(DataSet):
    """An image classification data set learned by walign.nets.ConvNet."""
    family = "cnn"
    summary_keys = CLASSIFICATION_KEYS
    summarize = staticmethod(Data.summarize)

    @classmethod
    def build_net(cls, data, width: int, batch_size: int, arch: str, activation: str, parameterization: str):
        from ..nets import ConvNet, NetSpec
        return ConvNet(NetSpec(data.arch if arch == "auto" else arch, width, data.in_channels, data.image_size,
                               data.num_classes, activation, parameterization))

    @classmethod
    def flops(cls, spec) -> dict:
        from ..cost import cnn_run_cost
        shape = cls.shape(spec.data_options)
        if shape is None:
            raise NotImplementedError(f"dataset {cls.name} does not declare its shape, so its runs' cost is unknown")
        return cnn_run_cost(spec, shape)
