"""Hydra plugins for walign's command line (found by Hydra's plugin scan of ``hydra_plugins``).

* ``SkipFinishedSweeper`` (skip_finished_sweeper.py): the sweeper. It expands the grids (the
  union of the sweep files for ``sweeps=paper``), checks every run before anything is written,
  prints the plan, and launches only the runs that are not finished, running elsewhere or queued
  in SLURM. A relaunched sweep therefore submits nothing that is done, which matters most on
  SLURM, where each submitted job costs a queue slot and a Python start.
* ``WalignSlurmLauncher`` (slurm_launcher.py): packs runs into SLURM array tasks and returns.
* job_configs.py: each job's configuration, composed once per set of group choices.

The paper's grids in the top-level ``sweeps/`` folder are the ``sweeps`` config group through the
link ``conf/sweeps -> ../sweeps``: the repository root itself is not on Hydra's search path, so
``python main.py --help`` lists config groups only, never the run folders under results/.
"""
