"""The data-set interface and its registry: a data set is one declared entry, like a rule.

An entry (a ``DataSet`` subclass registered with ``@register``) says everything walign needs to
know about a data set in one place:

* ``config``: its ``dataset.*`` config node (walign/configs.py stores it in Hydra's ConfigStore,
  so ``dataset=NAME`` works without a YAML file), with the defaults it gives the top-level
  ``epochs``, ``batch_size`` and ``lr``;
* ``loading``: which of those keys say where and how to read it (not what is trained, so they stay
  out of the run's identity); every other key is an identity option of the run;
* ``family``: the model family that learns it ('cnn', 'rnn'), which decides the rules that can;
* ``load`` and ``locate``: read it onto a device, and check its files before anything starts;
* ``summary_keys`` and ``summarize``: the result values its runs write into summary.json;
* ``batch_size``: the minibatch size a run uses (small CIFAR-10 has its own rule);
* ``build_net`` and ``flops``: the network that learns it, and what a run of it costs;
* ``shape``: split sizes and input shape, known without loading (for costs on a login node).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

DATASETS: dict[str, type["DataSet"]] = {}  # the one list of data set names
TOP_LEVEL_DEFAULTS = ("epochs", "batch_size", "lr")  # config keys that are defaults of top-level values


# the run's own values (walign.spec.RunSpec.identity): a data-set option of the same name would be
# overwritten in the run's identity, so two runs differing only in it would share a directory
RUN_VALUES = ("dataset", "rule", "width", "lr", "epochs", "batch_size", "seed", "activation", "parameterization",
              "optimizer", "arch", "compute_precision", "compile", "scale", "loss", "momentum", "weight_decay",
              "lr_milestones", "lr_gamma", "augment", "init")


def register(name: str):
    """Class decorator: make a data set available as ``dataset=name``. A name is taken once: a
    plugin cannot silently replace walign's data set (or another plugin's) of the same name. Its
    config must give the run's defaults (epochs, batch_size, lr), and no option may be named like
    one of the run's own values; either mistake is a ValueError at import, which a plugin's
    import reports in one line."""
    def add(cls):
        taken = DATASETS.get(name)
        if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"dataset {name!r} is already registered by {taken.__module__}.{taken.__qualname__}")
        lacking = [key for key in TOP_LEVEL_DEFAULTS if key not in cls.config]
        if lacking:
            raise ValueError(f"dataset {name!r}: its config must give {', '.join(lacking)} (the defaults of the run's "
                             f"{', '.join(lacking)}; batch_size may be None)")
        clashing = sorted(set(cls.config) - set(TOP_LEVEL_DEFAULTS) & set(RUN_VALUES))
        if clashing:
            raise ValueError(f"dataset {name!r}: option {', '.join(clashing)} has the name of one of the run's own "
                             f"values; rename it")
        cls.name = name
        DATASETS[name] = cls
        return cls
    return add


@dataclass(frozen=True)
class DataShape:
    """Split sizes and input shape of an image data set, known without loading it."""
    train: int
    val: int
    test: int
    channels: int
    image_size: int
    classes: int
    arch: str
    whole_batches: bool = True  # in-memory splits use floor(N / B) full batches; ImageNet keeps the partial last one


class DataSet:
    """Base class of a data set entry; the defaults are those of an in-memory image data set
    learned by the CNN (walign/datasets/image.py adds what image sets share)."""
    name = "?"
    family = "cnn"
    config: dict = {}             # dataset.* keys after ``name``, with their defaults
    loading: tuple = ()           # keys that say where/how to read the data: not the run's identity
    needs_root = False            # read from dataset.root (else generated or shipped)
    folder: str | None = None     # its folder under data_root (None: its name); see ``node``
    summary_keys: tuple = ()      # the keys ``summarize`` writes into summary.json

    @classmethod
    def node(cls) -> dict:
        """The ``dataset=NAME`` config node. A ``root`` declared as None reads
        ``<data_root>/<folder>`` (the top-level ``data_root``), so one data root serves a sweep of
        several data sets; a ``verify_md5`` flag defaults to the top-level ``verify_md5.<folder>``
        (itself defaulting to the declared value), settable per data set inside such a sweep."""
        folder = cls.folder or cls.name
        node = {"name": cls.name, **cls.config}
        if "root" in node and node["root"] is None:
            node["root"] = f"${{data_root}}/{folder}"
        if isinstance(node.get("verify_md5"), bool):
            node["verify_md5"] = f"${{oc.select:verify_md5.{folder},{str(node['verify_md5']).lower()}}}"
        return node

    @classmethod
    def option_keys(cls) -> list[str]:
        """Every dataset.* key it takes (besides name and the top-level defaults)."""
        return [k for k in cls.config if k not in TOP_LEVEL_DEFAULTS]

    @classmethod
    def split_options(cls, node: dict) -> tuple[dict, dict]:
        """A config node's values as (loading, identity options)."""
        values = {k: v for k, v in node.items() if k != "name" and k not in TOP_LEVEL_DEFAULTS}
        loading = {k: v for k, v in values.items() if k in cls.loading}
        return loading, {k: v for k, v in values.items() if k not in cls.loading}

    @classmethod
    def check(cls, loading: dict, options: dict) -> None:
        """Refuse values that fit no run (ConfigError, one line): unknown keys, and a flag (a key whose
        default is true or false) set to anything else."""
        given = {**loading, **options}
        for key, default in cls.config.items():
            if isinstance(default, bool) and key in given and not isinstance(given[key], bool):
                raise ConfigError(f"dataset.{key} must be true or false, got {given[key]!r}")
        unknown = set(given) - set(cls.option_keys())
        if unknown:
            raise ConfigError(f"dataset {cls.name} has no option {', '.join(sorted(unknown))}; its options: "
                              f"{', '.join(cls.option_keys()) or 'none'}")

    @classmethod
    def shape(cls, options: dict) -> DataShape | None:
        return None

    @classmethod
    def train_examples(cls, options: dict) -> int | None:
        """How many training examples a run has, known without loading (None if that needs the data)."""
        try:
            shape = cls.shape(options)
        except (ValueError, TypeError):
            return None
        return shape.train if shape is not None else None

    @classmethod
    def batch_size(cls, options: dict, given: int | None) -> int:
        """The minibatch size of a run that asks for ``given`` (None: the default, 100)."""
        return given or 100

    @classmethod
    def check_available(cls, loading: dict) -> None:
        """ConfigError (one line) unless the files are where ``loading`` says (fetched first if
        dataset.download asks); reads no data."""
        if cls.needs_root and not loading.get("root"):
            raise ConfigError(f"dataset {cls.name} needs dataset.root (the folder that holds it)")
        if cls.needs_root:  # files are read with torchvision: a torch/torchvision mismatch is one line here
            from ..machine import check_torchvision
            check_torchvision()
        cls.locate(**loading)

    @classmethod
    def locate(cls, **loading) -> None:
        """Check the files (nothing to check for generated or shipped data)."""

    @classmethod
    def load(cls, device, **options):
        """The data on ``device`` (a ``walign.datasets.splits.LoadedData``); ``options`` are its dataset.* values."""
        raise NotImplementedError

    @staticmethod
    def summarize(records: list[dict]) -> dict:
        """summary.json's result values from the per-epoch records."""
        raise NotImplementedError

    @classmethod
    def build_net(cls, data, width: int, batch_size: int, arch: str, activation: str, parameterization: str,
                  arch_options: dict | None = None):
        """The network that learns the loaded ``data``: ``arch`` (walign/archs/, with its options) or,
        for ``auto``, the data set's own."""
        raise NotImplementedError

    @classmethod
    def flops(cls, spec) -> dict:
        """FLOPs of the run ``spec`` (a walign.spec.RunSpec) describes (see walign/cost.py)."""
        raise NotImplementedError


def entry(name: str) -> type[DataSet]:
    """The registered data set ``name``; ConfigError naming the valid ones if there is none."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def result_keys() -> tuple[str, ...]:
    """Every summary key any registered data set writes."""
    return tuple(dict.fromkeys(k for cls in DATASETS.values() for k in cls.summary_keys))


def load(name: str, device, **options):
    """Load data set ``name`` onto ``device``; ``options`` are its dataset.* values."""
    cls = entry(name)
    if cls.needs_root and not options.get("root"):
        raise ConfigError(f"dataset {name} needs dataset.root (the folder that holds it)")
    return cls.load(device, **options)
