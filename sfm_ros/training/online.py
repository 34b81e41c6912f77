"""Online adaptation in a running node: the :class:`~sfm_ros.training.adapt.Adapter` in a background thread.

:class:`AdaptWorker` runs the adapter beside inference (a non-blocking hand-over of windows, a CPU
budget, periodic atomic saves, errors contained); :class:`OnlineAdaptation` is the node's ``adapt``
switch around it (the ROS-free pipeline, :class:`sfm_ros.runtime.pipeline.FramePipeline`, calls it
once a processed frame). Accepted weights go to the estimator through ``Estimator.set_model``, which
builds everything before it swaps, so inference never sees half-loaded weights and never waits.
"""
from __future__ import annotations

import copy
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sfm_ros.core.checkpoint import remove_stale_temp_files
from sfm_ros.core.model import SfMModel
from sfm_ros.training.adapt import Adapter, AdaptOptions


class AdaptWorker:
    """An :class:`Adapter` in a background thread: what the node runs with ``adapt`` on.

    The caller (the node's frame path) hands windows over with :meth:`offer`, which never blocks
    (a full queue drops the window and counts it). The thread adds them to the adapter, runs steps,
    and after every accepted update calls ``on_weights(model, version)`` with a fresh eval-mode
    model: the caller swaps it in with one assignment. CPU budget: the thread runs torch with
    ``threads`` intra-op threads (set in that thread: a thread that has already run torch work keeps
    its own count, one that starts torch work later may inherit it) and sleeps after each step so that its steps take at most ``duty`` of the wall time. Every ``save_every`` accepted
    updates, whenever what it serves changes, and at :meth:`stop`, the served weights
    (:meth:`Adapter.served`) are written atomically to ``save_path``.
    An exception in the thread stops adaptation (``stats()["error"]`` says why; the weights accepted
    before it are still saved at :meth:`stop`); inference goes on.

    ``adapter`` may be a zero-argument callable that builds the :class:`Adapter`: it is then called
    in the thread (copying the model and setting up the optimiser takes a second or more on a small
    CPU, which must not stall the frame path); :attr:`adapter` is None and ``stats()["starting"]``
    True until it returns; windows offered meanwhile wait in the queue (``queue_size`` of them:
    the rest are dropped and counted, as when the thread falls behind).
    """

    def __init__(self, adapter: Adapter | Callable[[], Adapter], on_weights, duty: float = 0.5, threads: int = 1,
                 save_path: str | Path | None = None, save_every: int = 10, queue_size: int = 8, log=None):
        if not 0 < duty <= 1:
            raise ValueError(f"adapt duty must be in (0, 1], got {duty}")
        if threads < 1 or save_every < 1 or queue_size < 1:
            raise ValueError(f"adapt threads, save_every and queue_size must be >= 1, got {threads}, "
                             f"{save_every}, {queue_size}")
        self._make = adapter if callable(adapter) else None
        self.adapter: Adapter | None = None if self._make is not None else adapter
        self.on_weights = on_weights
        self.duty, self.threads = float(duty), int(threads)
        self.save_path = Path(save_path) if save_path else None
        self.save_every = int(save_every)
        self.log = log or (lambda msg: None)
        self._queue: "queue.Queue" = queue.Queue(maxsize=queue_size)
        self._empty = queue.Empty
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="sfm_adapt", daemon=True)
        self.dropped = 0
        self.saved = 0
        self.error: str | None = None
        self.save_error: str | None = None  # the last save's failure (cleared by a good save)
        self.busy_s = 0.0
        self._stats = self.adapter.stats() if self.adapter is not None else {}

    def start(self) -> "AdaptWorker":
        self._thread.start()
        return self

    def offer(self, window: np.ndarray, K: np.ndarray) -> bool:
        """Queue one window (copied); False when the queue was full and it was dropped."""
        if self.error is not None or self._stop.is_set():
            return False
        try:
            self._queue.put_nowait((np.array(window, copy=True), np.array(K, dtype=np.float64, copy=True)))
            return True
        except Exception:  # queue.Full
            with self._lock:
                self.dropped += 1
            return False

    def stats(self) -> dict:
        with self._lock:
            d = dict(self._stats)
            d.update(dropped=self.dropped, saved=self.saved, busy_s=self.busy_s, error=self.error,
                     save_error=self.save_error,
                     running=self._thread.is_alive(), starting=self.adapter is None)
        return d

    def _save(self) -> bool:
        """Write the adapted weights; a failed write (a full disk) is reported, never raised: the
        previous file stays intact, adaptation goes on and the next save tries again."""
        if self.save_path is None:
            return False
        try:
            self.save_path.parent.mkdir(parents=True, exist_ok=True)
            self.adapter.save(self.save_path)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            with self._lock:
                self.save_error = f"could not write {self.save_path} ({reason}); the previous file is intact"
            self.log(f"adaptation: {self.save_error}")
            return False
        with self._lock:
            self.saved += 1
            self.save_error = None
        return True

    def _run(self) -> None:
        torch.set_num_threads(self.threads)
        try:
            if self.adapter is None:
                adapter = self._make()
                with self._lock:
                    self.adapter, self._stats = adapter, adapter.stats()
            version, serving = self.adapter.version, self.adapter.serving
            while not self._stop.is_set():
                try:
                    while True:
                        self.adapter.add_window(*self._queue.get_nowait())
                except self._empty:
                    pass
                if not self.adapter.ready():
                    self._stop.wait(0.05)
                    continue
                t0 = time.perf_counter()
                self.adapter.step()
                if self.adapter.version != version:
                    version = self.adapter.version
                    self.on_weights(self.adapter.inference_model(), version)
                dt = time.perf_counter() - t0
                with self._lock:
                    self.busy_s += dt
                    self._stats = self.adapter.stats()
                last = self.adapter.last
                decided = last is not None and last.step == self.adapter.steps
                if decided and (serving != self.adapter.serving or (
                        last.accepted and self.adapter.accepted_updates % self.save_every == 0)):
                    serving = self.adapter.serving  # what the node serves changed, or save_every updates
                    self._save()
                self._stop.wait(dt * (1 - self.duty) / self.duty)
        except Exception as exc:  # adaptation stops; the node's inference is not affected
            with self._lock:
                self.error = f"{type(exc).__name__}: {exc}"
            self.log(f"adaptation stopped: {self.error} (inference goes on with the last served weights)")

    def stop(self, save: bool = True, timeout: float = 30.0) -> Path | None:
        """Stop the thread (after its current step) and write the served weights when ``save``.

        Returns the checkpoint path written, or None."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():  # still inside a step or a decision: saving now could mix two versions
            self.log(f"adaptation did not stop within {timeout:g} s: the adapted weights are not saved")
            return None
        if self.adapter is None:  # stopped (or failed) before the adapter was built: nothing learnt
            return None
        with self._lock:
            self._stats = self.adapter.stats()
        if save and self.save_path is not None and self.adapter.accepted_updates > 0:
            return self.save_path if self._save() else None
        return None


def default_save_path() -> Path:
    """Where the node writes adapted weights unless told: ``$ROS_HOME/sfm_ros/adapted.pt`` (``~/.ros``)."""
    return Path(os.environ.get("ROS_HOME") or Path.home() / ".ros") / "sfm_ros" / "adapted.pt"


class OnlineAdaptation:
    """The node's ``adapt`` switch around an :class:`AdaptWorker` (ROS-free; the pipeline calls it).

    :meth:`update` is called once a processed frame with the switch's value and the pose window:
    turning it on builds an :class:`Adapter` from the estimator's current weights and starts the
    worker; while on, each full window (network-size frames, the network-size ``K``) is offered;
    turning it off stops the worker and saves. Accepted weights go to ``estimator.set_model``.
    """

    def __init__(self, estimator, started_from: str, save_path: str | Path | None = None,
                 duty: float = 0.5, threads: int = 1, save_every: int = 10,
                 opts: AdaptOptions | None = None, log=None):
        self.estimator, self.started_from = estimator, str(started_from)
        self.save_path = Path(save_path) if save_path else default_save_path()
        self.duty, self.threads, self.save_every = duty, threads, save_every
        self.opts = opts or AdaptOptions()
        self.opts.validate()
        self.log = log or (lambda msg: None)
        self.worker: AdaptWorker | None = None
        self.version = 0
        self.last_saved: Path | None = None
        self.offered = 0
        self.closed = False      # set by close(final=True): no worker is started again
        self.refused: str | None = None

    def _weights(self, model: SfMModel, version: int) -> None:
        self.estimator.set_model(model)
        self.version = version

    def update(self, enabled: bool, frames: list[np.ndarray] | None = None, K: np.ndarray | None = None) -> None:
        if not enabled or self.closed:
            if self.worker is not None:
                self.close()
            return
        if self.worker is None:
            e = self.estimator
            trained = (e.options.model.height, e.options.model.width)
            if (e.height, e.width) != trained:
                if not self.refused:
                    self.refused = (f"adapt needs the checkpoint's input size {trained[1]}x{trained[0]}; the node "
                                    f"runs {e.width}x{e.height} (height/width parameters): adaptation is off")
                    self.log(self.refused)
                return
            opts, started_from = copy.deepcopy(self.opts), self.started_from

            def build() -> Adapter:  # in the worker thread: the frame path does not wait for the copies
                remove_stale_temp_files(self.save_path)  # left by a save that was killed
                return Adapter(e.model, e.options, opts, started_from=started_from)
            self.worker = AdaptWorker(build, self._weights, duty=self.duty, threads=self.threads,
                                      save_path=self.save_path, save_every=self.save_every, log=self.log).start()
            self.log(f"adaptation on: learning from the camera (duty {self.duty:g}, {self.threads} thread(s)); "
                     f"weights saved to {self.save_path}")
        if frames is not None and K is not None and len(frames) == self.estimator.options.model.seq_len:
            self.offered += 1
            self.worker.offer(np.stack(frames), K)

    def close(self, final: bool = False) -> Path | None:
        """Stop adapting and write the served weights (None when nothing was accepted); ``final``
        (shutdown): no worker is started again whatever ``update`` is told."""
        self.closed = self.closed or final
        if self.worker is None:
            return None
        worker, self.worker = self.worker, None
        path = worker.stop(save=True)
        self._final = worker.stats()
        if path is not None:
            self.last_saved = path
            st = worker.stats()
            self.log(f"adaptation off: the {st.get('serving', 'served')} weights ({st['accepted_updates']} accepted "
                     f"updates) written to {path}")
        elif self._final.get("save_error"):
            self.log(f"adaptation off: the adapted weights are not saved: {self._final['save_error']}")
        return path

    def warnings(self) -> list[str]:
        """What keeps adaptation from running while it is switched on (each makes the node's status
        WARN): the worker stopped by an error, or adaptation refused for this node's settings."""
        w = self.worker
        if w is not None and w.error is not None:
            return [f"adaptation stopped: {w.error} (inference goes on with the last served weights)"]
        if w is not None and w.save_error is not None:
            return [f"adaptation goes on but its weights are not saved: {w.save_error}"]
        if w is None and self.refused:
            return [self.refused]
        return []

    def diagnostic_values(self) -> dict[str, str]:
        w = self.worker
        if w is None:
            if self.refused:
                return {"adapt": "refused: " + self.refused}
            return {"adapt": "off" if self.last_saved is None else f"off (last saved {self.last_saved})"}
        s = w.stats()
        if s["starting"]:  # the worker thread is still building the learner (or failed to)
            return {"adapt": "error: " + s["error"] if s["error"] else "starting"}
        out = {"adapt": "error: " + s["error"] if s["error"] else "on",
               "adapt_steps": f"{s['steps']} ({s['skipped_steps']} skipped)",
               "adapt_updates": f"accepted {s['accepted_updates']}, rejected {s['rejected_updates']}",
               "adapt_serving": s.get("serving", "starting weights"),
               "adapt_windows": (f"buffer {s['buffer']}, held out {s['holdout']}, static {s['windows_static']}, "
                                 f"invalid {s['windows_invalid']}, dropped {s['dropped']}"),
               "adapt_saved": f"{s['saved']} to {self.save_path}" + (f"; last save failed: {s['save_error']}"
                                                                      if s.get("save_error") else "")}
        if "holdout_before" in s:
            out["adapt_holdout_loss"] = f"{s['holdout_before']:.4f} -> {s['holdout_after']:.4f}"
        return out
