"""WorkerPool: ``--workers N``, N consumer processes that each get every frame.

Processes (spawn context, so each has its own interpreter and GIL) each run a full
:class:`Consumer` named ``<name>-<i>``. The processor is given as a spec string (loaded
in each worker) or as a picklable callable. ``stop()`` (safe from a signal handler)
ends the pool's ``run()``, which then asks every worker to stop; stragglers are killed
after a grace period.

The pool supervises its workers: one that dies (an exception escaping the consumer, which
it logs with its traceback, or a signal, ``os._exit``, a crash in native code) is started
again under the same name after a backoff (``RESTART_BACKOFF_S``, doubling to
``RESTART_BACKOFF_MAX_S`` while it keeps dying within ``STABLE_S``); the others go on.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
import sys
import threading
import time
from multiprocessing.context import SpawnProcess

from framebroker.errors import FrameBrokerError
from framebroker.logs import setup_logging
from framebroker.service import Service

from .config import ConsumerConfig
from .processors import Processor, load_processor
from .results import print_json_line
from .runtime import Consumer

log = logging.getLogger("framebroker.consumer")

ProcessorSpec = str | Processor
POLL_S = 0.1
STOP_GRACE_S = 5.0
RESTART_BACKOFF_S = 0.5  # first restart of a dead worker after this long
RESTART_BACKOFF_MAX_S = 10.0
STABLE_S = 30.0  # a worker that ran this long starts over at the first backoff


class WorkerPool(Service):
    """N consumer processes, supervised; the lifecycle of :class:`Service`."""

    thread_name = "framebroker-workers"

    def __init__(
        self, config: ConsumerConfig, processor: ProcessorSpec, *, print_results: bool = False
    ) -> None:
        super().__init__()
        self.config = config
        self.processor = processor
        self.print_results = print_results
        self._mp = multiprocessing.get_context("spawn")
        self._processes: list[SpawnProcess] = []
        self._started_at: list[float] = []
        self._backoff: list[float] = []
        self._restart_at: list[float | None] = []
        self.restarts = 0

    def worker_configs(self) -> list[ConsumerConfig]:
        return [
            dataclasses.replace(self.config, name=f"{self.config.name}-{i}", workers=1)
            for i in range(self.config.workers)
        ]

    def _open(self) -> None:
        """Start the worker processes (Ctrl-C reaches them only through stop())."""
        for config in self.worker_configs():
            self._processes.append(self._spawn(config))
            self._started_at.append(time.monotonic())
            self._backoff.append(RESTART_BACKOFF_S)
            self._restart_at.append(None)
        log.info("started %d consumer workers", len(self._processes))

    def _spawn(self, config: ConsumerConfig) -> SpawnProcess:
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            process = self._mp.Process(
                target=_worker_main,
                args=(config, self.processor, self.print_results, level),
                name=config.name,
            )
            process.start()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        return process

    def _supervise(self) -> None:
        """Restart workers that died, each after its backoff."""
        now = time.monotonic()
        configs = self.worker_configs()
        for i, process in enumerate(self._processes):
            if process.is_alive() or self.stopping:
                continue
            if self.config.duration is not None and process.exitcode == 0:
                continue  # it ran its --duration
            due = self._restart_at[i]
            if due is None:
                if now - self._started_at[i] >= STABLE_S:
                    self._backoff[i] = RESTART_BACKOFF_S
                delay = self._backoff[i]
                self._backoff[i] = min(delay * 2, RESTART_BACKOFF_MAX_S)
                self._restart_at[i] = now + delay
                log.error(
                    "worker %s died (exit code %s); restarting it in %.1f s",
                    process.name,
                    process.exitcode,
                    delay,
                )
            elif now >= due:
                self._processes[i] = self._spawn(configs[i])
                self._started_at[i] = now
                self._restart_at[i] = None
                self.restarts += 1
                log.info("worker %s restarted (pid %s)", process.name, self._processes[i].pid)

    def _serve(self) -> None:
        """Supervise until stopped or every worker has ended; _release stops them all."""
        while not self.stopping and not self._all_done():
            self._supervise()
            self._stopping.wait(POLL_S)

    def _all_done(self) -> bool:
        """Every worker ended by itself (its --duration) and none is due for a restart."""
        return self.config.duration is not None and all(
            not p.is_alive() and p.exitcode == 0 for p in self._processes
        )

    @property
    def exitcodes(self) -> list[int | None]:
        return [p.exitcode for p in self._processes]

    def _release(self) -> None:
        # SIGTERM, not a shared multiprocessing.Event: a worker killed while holding the
        # Event's lock would leave it locked, and set() would block forever.
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(STOP_GRACE_S)
            if process.is_alive():
                log.warning("worker %s did not stop; killing it", process.name)
                process.kill()
                process.join()
        failed = [p.name for p in self._processes if p.exitcode != 0]
        if failed:
            log.error("workers failed: %s (exit codes %s)", ", ".join(failed), self.exitcodes)


def _worker_main(
    config: ConsumerConfig,
    processor: ProcessorSpec,
    print_results: bool,
    log_level: str,
) -> None:
    """One worker process: a Consumer until SIGTERM (from the pool) or its duration."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    setup_logging(log_level)
    try:
        call = load_processor(processor) if isinstance(processor, str) else processor
        consumer = Consumer(config, call, on_result=print_json_line if print_results else None)
        signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
        consumer.run()
    except FrameBrokerError as exc:
        log.error("worker %s: %s", config.name, exc)
        sys.exit(1)
    except BaseException:
        log.exception("worker %s failed", config.name)
        sys.exit(1)
