"""walign's command line (Hydra).

    python main.py                                   one run on the embedded CIFAR-10 sample
    python main.py rule=normal width=64 lr=2         change any config value (see conf/ and docs/running.md)
    python main.py -m rule=align_ada width=8,512     a sweep: one run per combination
    python main.py -m sweeps=table6 launcher=slurm   a paper grid (sweeps/), as SLURM array jobs

Mistakes in the command line (an unknown rule or data set, a key that does not exist, a bad
value) are reported in one line, before Hydra or any training starts (walign/command.py). A
single run is checked into a RunSpec and executed here; a sweep goes through Hydra's sweeper.
"""
from __future__ import annotations

import signal
import sys

if __name__ == "__main__":  # Ctrl-C while the libraries below load: one line, not a traceback
    ORIGINAL_SIGINT = signal.getsignal(signal.SIGINT)
    STOPPED_EARLY: list[int] = []  # also checked before the run: library code may swallow the SystemExit

    def _stopped_early(signum, frame):
        if not STOPPED_EARLY:
            print("walign: stopped (Ctrl-C) before any run started", file=sys.stderr, flush=True)
        STOPPED_EARLY.append(signum)
        raise SystemExit(130)
    signal.signal(signal.SIGINT, _stopped_early)

import hydra
from omegaconf import DictConfig, OmegaConf

from walign import command


def run(spec, config_yaml: str, multirun: bool) -> str:
    """Execute one checked run; a run that cannot write is one line (in a sweep only that run
    has failed, and the sweep goes on to the next). Returns its status."""
    from walign.app import execute
    from walign.errors import ConfigError
    from walign.runs import WriteError
    try:
        summary = execute(spec, config_yaml)
    except ConfigError as err:  # bad values or missing data hold for the whole sweep: stop it here
        command.fail(str(err))
    except WriteError as err:
        message = (f"{err}; nothing else was changed and the last checkpoint is kept: run the same command to "
                   f"resume once the file can be written")
        if not multirun:
            command.fail(message, 1)
        print(f"walign: error: {message}", file=sys.stderr, flush=True)
        return "failed"
    return command.report(summary, multirun)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    """One run of a sweep (or Hydra's own --cfg/--help/--info)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from walign.errors import ConfigError
    from walign.plugins import import_user_modules
    from walign.spec import RunSpec

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        import_user_modules(cfg)  # in a job process of its own (launcher=local or slurm)
        spec = RunSpec.from_config(cfg, command.sweep_name(HydraConfig.get()) if multirun else "")
    except ConfigError as err:
        command.fail(str(err))
    return run(spec, OmegaConf.to_yaml(cfg, resolve=True), multirun)


if __name__ == "__main__":
    try:
        arguments = sys.argv[1:]
        flags = command.hydra_flags(arguments)
        command.import_modules(flags.overrides)
        command.check_overrides(flags.overrides, flags.multirun)
        hydra_does_it = (flags.multirun or flags.help or flags.hydra_help or flags.cfg or flags.info
                         or flags.shell_completion)
        single = None if hydra_does_it else command.single_run(flags.overrides)  # checked before anything is written
    finally:
        signal.signal(signal.SIGINT, ORIGINAL_SIGINT if ORIGINAL_SIGINT is not None else signal.SIG_DFL)
        if STOPPED_EARLY:  # seen in CI once: a Ctrl-C during start-up was swallowed and the run trained
            sys.exit(130)
    try:
        if single is None:
            main()  # a stop signal during training ends the process with walign.interrupt.Stopped
        else:
            run(*single, multirun=False)
    except KeyboardInterrupt:
        print("walign: stopped (Ctrl-C); the last checkpoint, if any, is kept: run the same command to resume",
              file=sys.stderr, flush=True)
        sys.exit(130)
