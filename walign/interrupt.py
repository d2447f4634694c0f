"""Turn a stop signal into "checkpoint, then stop" instead of losing the epoch in progress.

SLURM sends SIGUSR2 shortly before a job's time limit or on preemption (submitit then requeues
the job), ``kill`` sends SIGTERM, and Ctrl-C sends SIGINT. While training runs inside
``DeferredSignals``, such a signal only sets a flag. The training loop looks at the flag after
every step; when it is set, the run saves a checkpoint at that step boundary and then hands the
signal to whatever would have handled it otherwise (submitit's requeue handler, Python's
KeyboardInterrupt, or the default termination). The requeued or restarted run then continues
from that step, with the same results as a run that was never stopped.

Stop means stop: if that handler returns instead of ending the process (submitit "bypasses"
SIGTERM; a process started in the background of a script inherits SIGINT as ignored), walign
ends the process itself with ``Stopped``, a SystemExit whose status is 128 + the signal's number,
as a shell reports a process the signal ended. A run that said it stopped can therefore never
train on beside the relaunch that resumes it.
"""
from __future__ import annotations

import os
import signal
import threading

def signal_name(signum) -> str | None:
    return signal.Signals(signum).name if signum is not None else None


class Stopped(SystemExit):
    """The run saved its state after a stop signal and the process now ends (status 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(128 + int(signum))
        self.signum = int(signum)


SIGNALS = tuple(s for s in (getattr(signal, "SIGUSR2", None), signal.SIGTERM, signal.SIGINT) if s is not None)


class DeferredSignals:
    """Context manager: hold back SIGUSR2, SIGTERM and SIGINT until ``deliver`` is called.

    Outside the main thread (where Python cannot install handlers) it does nothing and
    ``pending`` stays None.
    """

    def __init__(self, signals=SIGNALS):
        self.signals, self.previous, self.received = signals, {}, None
        self.obeying = False  # set once a stop has been decided: whatever happens next, the process ends

    def __enter__(self) -> "DeferredSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self.previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _note(self, signum, frame) -> None:
        already = self.received is not None
        self.received = signum
        if already:  # a second signal before the next step boundary (a long evaluation): obey it now
            self.obey()

    @property
    def pending(self) -> int | None:
        """The signal received and not yet delivered, or None."""
        return self.received

    def obey(self) -> None:
        """Deliver the held-back signal and end the process: if its previous handler returns (or
        raises KeyboardInterrupt), raise ``Stopped``. Does nothing without a pending signal."""
        signum = self.received
        if signum is None:
            return
        self.obeying = True
        try:
            self.deliver()
        except KeyboardInterrupt:
            pass
        raise Stopped(signum)

    def deliver(self) -> None:
        """Give the held-back signal to its previous handler; usually this does not return
        (submitit requeues and exits, SIGINT raises KeyboardInterrupt, SIGTERM terminates)."""
        signum, self.received = self.received, None
        if signum is None:
            return
        previous = self.previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, None)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            signal.signal(signum, self._note)  # reached only if the default action is to ignore
