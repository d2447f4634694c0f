"""Hydra plugins for walign's command line (found by Hydra's plugin scan of ``hydra_plugins``).

* ``SweepsSearchPath`` makes the YAML grids in the top-level ``sweeps/`` folder a config group,
  so ``python main.py -m sweeps=table6`` launches Table 6.
* ``SkipFinishedSweeper`` is Hydra's basic sweeper, except that before each batch is handed to the
  launcher it drops every run whose run directory already holds a finished summary, and says how
  many it dropped. A relaunched sweep therefore submits nothing that is done, which matters most
  on SLURM, where each submitted job costs a queue slot and a Python start.
"""
