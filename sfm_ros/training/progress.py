"""Progress of a whole training run: one bar on a terminal, plain lines otherwise.

The run ends at the first of its budgets: a number of steps (``train.epochs`` x steps per epoch,
capped by ``train.max_steps``) or a wall-clock time (``train.max_minutes``, counted from the start
of this process's run). :class:`RunProgress` shows how far the run is towards whichever of the two
ends it first, with the loss, the last validation loss, the rate in steps/s and the ETA:

* on a terminal (``bar=True``): one tqdm bar for the whole run (not one per epoch), on stderr;
* otherwise (``--no-progress``, or stderr is not a terminal): a plain line through ``log`` at the
  first step, then every ``every_steps`` steps or ``every_seconds`` seconds, whichever comes first::

      step 20/35 (57 %): loss 0.1234, validation 0.1300 (step 16), 3.10 steps/s, ETA 0:00:05 (step budget)

ROS-free; the clock is injectable for tests.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Callable

__all__ = ["RunProgress", "format_duration", "PROGRESS_SECONDS"]

#: Seconds between plain progress lines at most (a slow run is never silent for long).
PROGRESS_SECONDS = 30.0
#: Seconds between redraws of the bar at least (fast tiny runs would spend their time drawing).
BAR_SECONDS = 0.2


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class RunProgress:
    """Progress over a whole run, towards the first of its budgets.

    Args:
        total_steps: the step budget (the step at which the run ends; 0: none, the time budget ends it).
        max_minutes: the time budget of this run in minutes (0: none; one of the two must be set).
        start_step: the step the run starts from (a resumed run's step).
        bar: a tqdm bar on stderr (else plain lines through ``log``).
        log: where plain lines go.
        every_steps: a plain line every this many steps (>= 1) ...
        every_seconds: ... or after this many seconds since the previous one.
        clock: monotonic seconds.
    """

    def __init__(self, total_steps: int, max_minutes: float = 0.0, start_step: int = 0, bar: bool = False,
                 log: Callable[[str], None] = print, every_steps: int = 50,
                 every_seconds: float = PROGRESS_SECONDS, clock: Callable[[], float] = time.monotonic):
        if total_steps < 0:
            raise ValueError(f"total_steps must be >= 0 (0 = no step budget), got {total_steps}")
        if not (max_minutes >= 0 and math.isfinite(max_minutes)):
            raise ValueError(f"max_minutes must be a finite number >= 0, got {max_minutes}")
        if total_steps == 0 and max_minutes == 0:
            raise ValueError("a run needs a step or a time budget: total_steps and max_minutes are both 0")
        self.total_steps, self.budget_s = int(total_steps), 60.0 * max_minutes
        self.start_step, self.log, self.clock = int(start_step), log, clock
        self.every_steps, self.every_seconds = max(1, int(every_steps)), float(every_seconds)
        self.t0 = clock()
        self._last_line_t, self._last_line_step = self.t0, None
        self.val: float | None = None
        self.val_step: int | None = None  # the step whose weights self.val is of
        self._bar = None
        self._pending: tuple[int, float] | None = None
        if bar:
            from tqdm import tqdm

            self._bar = tqdm(total=1000, file=sys.stderr, dynamic_ncols=True, leave=True,
                             bar_format="{percentage:3.0f}%|{bar}| {desc}")
            self._bar.set_description_str(("" if self.total_steps else "step ")
                                          + f"{self._steps_text(self.start_step)}, starting")

    @property
    def has_bar(self) -> bool:
        """Whether a bar is shown (else plain lines)."""
        return self._bar is not None

    # ------------------------------------------------------------------ estimates
    def rate(self, step: int) -> float:
        """Steps per second of this run so far (NaN before the first step)."""
        dt = self.clock() - self.t0
        done = step - self.start_step
        return done / dt if done > 0 and dt > 0 else math.nan

    def eta(self, step: int) -> tuple[float, str]:
        """``(seconds left, which budget ends the run: "step budget" | "time budget")``."""
        r = self.rate(step)
        steps_left = (self.total_steps - step) / r if r > 0 and self.total_steps else math.inf
        if self.budget_s > 0:
            time_left = max(0.0, self.budget_s - (self.clock() - self.t0))
            if time_left < steps_left:
                return time_left, "time budget"
        return steps_left, "step budget"

    def fraction(self, step: int) -> float:
        """How far the run is towards the budget that ends it first (0..1)."""
        f = step / self.total_steps if self.total_steps else 0.0
        if self.budget_s > 0:
            f = max(f, (self.clock() - self.t0) / self.budget_s)
        return min(1.0, max(0.0, f))

    def status(self, step: int, loss: float) -> str:
        """``20/35 steps (57 %): loss 0.1234, validation 0.1300, 3.10 steps/s, ETA 0:00:05 (step budget)``."""
        eta, which = self.eta(step)
        val = f", validation {self.val:.4f}" if self.val is not None and math.isfinite(self.val) else ""
        if val and self.val_step is not None:  # computed when files are written: say how old it is
            val += f" (step {self.val_step})"
        r = self.rate(step)
        rate = f"{r:.2f} steps/s" if math.isfinite(r) else "? steps/s"
        return (f"{self._steps_text(step)} ({100 * self.fraction(step):.0f} %): loss {loss:.4f}{val}, "
                f"{rate}, ETA {format_duration(eta)} ({which})")

    def _steps_text(self, step: int) -> str:
        # "step 20/35 steps (57 %)" in a line; "step 20 (57 % of the time budget)" without a step budget
        return f"{step}/{self.total_steps} steps" if self.total_steps else f"{step}"

    # ------------------------------------------------------------------ updates
    def update(self, step: int, loss: float) -> None:
        """After optimiser step ``step`` with training loss ``loss``."""
        now = self.clock()
        if self._bar is not None:
            self._pending = (step, loss)
            if (self.total_steps and step >= self.total_steps) or now - self._last_line_t >= BAR_SECONDS or self._last_line_step is None:
                self._draw()
            return
        due = (self._last_line_step is None or step % self.every_steps == 0
               or now - self._last_line_t >= self.every_seconds)
        if due:
            self.log(f"step {self.status(step, loss)}")
            self._last_line_t, self._last_line_step = now, step

    def set_validation(self, val: float | None, step: int | None = None) -> None:
        """The latest validation loss (shown from the next update on), of the weights of ``step``
        when given (shown beside it)."""
        if val is not None:
            self.val = float(val)
            self.val_step = None if step is None else int(step)

    def _draw(self) -> None:
        step, loss = self._pending
        self._bar.n = int(round(1000 * self.fraction(step)))
        self._bar.set_description_str(("" if self.total_steps else "step ") + self.status(step, loss))  # refreshes
        self._last_line_t, self._last_line_step = self.clock(), step
        self._pending = None

    def close(self) -> None:
        """Draw the last update (if a redraw was skipped) and close the bar."""
        if self._bar is not None:
            if self._pending is not None:
                self._draw()
            self._bar.close()
            self._bar = None
