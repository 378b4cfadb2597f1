"""Lifetimes of C handles shared between threads.

A `HandleGuard` counts the C calls in flight on a handle (a model, a context).  Every call runs
inside `with guard.use():`, which refuses (ModelStateError) once the handle is closed; `close()`
marks it closed at once, asks the running calls to stop (the `cancel` callable: the C cancel
flag), waits for them to return, and only then lets the caller free the handle.  So a handle is
never freed under a running evaluation, whichever thread closes it, and Ctrl-C during the wait
cannot cut it short (the interrupt is raised again once the wait is over).
"""
import contextlib
import threading

from . import errors


class HandleGuard:
    def __init__(self, what):
        self.what = what                    # "model", "sequence": for the error message
        self._cv = threading.Condition()
        self._busy = 0                      # C calls in flight
        self.closed = False

    def check(self):
        if self.closed:
            raise errors.ModelStateError(f"the {self.what} is closed")

    @contextlib.contextmanager
    def use(self):
        """Hold the handle alive for the duration of a C call (or of the use of memory it owns)."""
        with self._cv:
            self.check()
            self._busy += 1
        try:
            yield
        finally:
            with self._cv:
                self._busy -= 1
                if self._busy == 0:
                    self._cv.notify_all()

    def close(self, cancel=None):
        """Refuse new calls, cancel and wait for the running ones.  True the first time (the
        caller then frees the handle), False when already closed."""
        with self._cv:
            if self.closed:
                return False
            self.closed = True
            busy = self._busy
        if busy and cancel is not None:
            cancel()
        wait_uninterrupted(self._idle)
        return True

    def _idle(self, timeout):
        with self._cv:
            return self._cv.wait_for(lambda: self._busy == 0, timeout)


def wait_uninterrupted(done, poll=0.05):
    """Call done(timeout) until it returns True.  A KeyboardInterrupt meanwhile is held back and
    raised once done: the thing waited for (a C call) must finish before Python unwinds past the
    memory it uses."""
    interrupted = None
    while True:
        try:
            if done(poll):
                break
        except KeyboardInterrupt as e:
            interrupted = e
    if interrupted is not None:
        raise interrupted
