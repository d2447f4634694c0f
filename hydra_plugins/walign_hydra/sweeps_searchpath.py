"""Put the repository root on Hydra's config search path: its ``sweeps/`` folder is the
``sweeps`` config group (one YAML file per paper table or figure)."""
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

REPOSITORY = Path(__file__).resolve().parents[2]


class SweepsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if (REPOSITORY / "sweeps").is_dir():
            search_path.append(provider="walign-sweeps", path=f"file://{REPOSITORY}")
