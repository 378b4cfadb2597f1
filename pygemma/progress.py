"""One progress printer for long work (model load, quantizing, synthetic models, GPU builds).

On a terminal the line is redrawn in place (`\\r`).  In a log or a pipe, where carriage returns
pile up into one unreadable line, it prints a plain line each time the work passes another
`step` percent, and at the end.  `--log-disable` means no ProgressLine at all.
"""
import sys
import time


class ProgressLine:
    def __init__(self, stream=None, step=10, interval=0.2):
        self.stream = stream or sys.stderr
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.step, self.interval = step, interval
        self.next_step = 0          # plain mode: the next percentage that prints a line
        self.width = 0              # terminal mode: the length of the line on screen
        self.last = None            # terminal mode: the time of the last redraw
        self.shown = False

    def update(self, fraction, text, force=False):
        """`text` (the whole line, no newline) for work `fraction` (0..1) done."""
        percent = 100.0 * min(max(fraction, 0.0), 1.0)
        if self.tty:
            now = time.monotonic()
            if not (force or percent >= 100 or self.last is None or now - self.last >= self.interval):
                return
            self.last = now
            self.stream.write("\r" + text + " " * max(0, self.width - len(text)))
            self.width = len(text)
        else:
            if percent < self.next_step:
                return
            while self.next_step <= percent:
                self.next_step += self.step
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def finish(self):
        """End the line (terminal mode); nothing when nothing was shown."""
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self.shown = False
