"""The composed configuration of each job of a sweep, fast.

Hydra composes a job's configuration from scratch (its defaults list, every file, every
override): about 50 ms each, a minute and a half for the 1800 runs of the whole paper, before the
first one is even checked. Jobs of a sweep differ mostly in plain values (width, lr, seed), and a
config depends on its config-group choices (dataset=..., rule=..., task=...) only through the
defaults list. So the configuration is composed once per set of group choices, by Hydra itself,
and each job's plain values are then applied to a copy by Hydra's own override code, exactly as
its composition would apply them. tests/test_paper.py checks the result against Hydra's full
composition, job by job.
"""
from __future__ import annotations

from typing import Sequence

GROUPS = ("dataset", "rule", "arch", "task", "launcher", "logger", "sweeps")  # walign's config groups (conf/, sweeps/)


class JobConfigs:
    """``get(overrides)``: the job's config, as ``config_loader.load_sweep_config`` gives it."""

    def __init__(self, config_loader, master_config):
        from hydra.core.override_parser.overrides_parser import OverridesParser
        self.loader, self.master = config_loader, master_config
        self.parser = OverridesParser.create(config_loader=config_loader)
        self.composed: dict[tuple, object] = {}

    @staticmethod
    def is_group(override) -> bool:
        key = override.key_or_group
        return key in GROUPS or key.startswith("hydra/") or override.package is not None

    def get(self, overrides: Sequence[str]):
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from omegaconf import OmegaConf, flag_override
        parsed = self.parser.parse_overrides(list(overrides))
        groups = tuple(o.input_line for o in parsed if self.is_group(o))
        values = [o for o in parsed if not self.is_group(o)]
        if groups not in self.composed:
            self.composed[groups] = self.loader.load_sweep_config(self.master, list(groups))
        cfg = self.composed[groups].copy()
        with flag_override(cfg, ["readonly"], False):
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg
