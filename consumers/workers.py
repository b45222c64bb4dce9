"""WorkerPool: ``--workers N``, N consumer processes that each get every frame.

Processes (spawn context, so each has its own interpreter and GIL) each run a full
:class:`Consumer` named ``<name>-<i>``. The processor is given as a spec string (loaded
in each worker) or as a picklable callable. ``close()`` (safe from a signal handler)
asks every worker to stop; stragglers are terminated after a grace period.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
import sys
import threading
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as MpEvent
from typing import Any

from consumers.config import ConsumerConfig
from consumers.processors import Processor, load_processor
from consumers.results import print_json_line
from consumers.runtime import Consumer
from framebroker.errors import FrameBrokerError
from framebroker.logs import setup_logging

log = logging.getLogger("framebroker.consumer")

ProcessorSpec = str | Processor
POLL_S = 0.1
STOP_GRACE_S = 5.0


class WorkerPool:
    def __init__(
        self, config: ConsumerConfig, processor: ProcessorSpec, *, print_results: bool = False
    ) -> None:
        self.config = config
        self.processor = processor
        self.print_results = print_results
        self._mp = multiprocessing.get_context("spawn")
        self._mp_stop: MpEvent = self._mp.Event()
        self._closing = threading.Event()
        self._processes: list[SpawnProcess] = []

    def worker_configs(self) -> list[ConsumerConfig]:
        return [
            dataclasses.replace(self.config, name=f"{self.config.name}-{i}", workers=1)
            for i in range(self.config.workers)
        ]

    def start(self) -> None:
        """Start the worker processes (Ctrl-C reaches them only through close())."""
        if self._processes:
            return
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            for config in self.worker_configs():
                process = self._mp.Process(
                    target=_worker_main,
                    args=(config, self.processor, self._mp_stop, self.print_results, level),
                    name=config.name,
                )
                process.start()
                self._processes.append(process)
        finally:
            if in_main:
                signal.signal(signal.SIGINT, previous)
        log.info("started %d consumer workers", len(self._processes))

    def run(self) -> None:
        """Wait until close() is called or every worker has ended, then stop them all."""
        self.start()
        try:
            while not self._closing.is_set() and any(p.is_alive() for p in self._processes):
                self._closing.wait(POLL_S)
        finally:
            self._stop_all()

    def close(self) -> None:
        self._closing.set()

    @property
    def exitcodes(self) -> list[int | None]:
        return [p.exitcode for p in self._processes]

    def _stop_all(self) -> None:
        self._mp_stop.set()
        for process in self._processes:
            process.join(STOP_GRACE_S)
            if process.is_alive():
                log.warning("worker %s did not stop; terminating it", process.name)
                process.terminate()
                process.join(STOP_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join()
        failed = [p.name for p in self._processes if p.exitcode != 0]
        if failed:
            log.error("workers failed: %s (exit codes %s)", ", ".join(failed), self.exitcodes)


def _worker_main(
    config: ConsumerConfig,
    processor: ProcessorSpec,
    stop: MpEvent,
    print_results: bool,
    log_level: str,
) -> None:
    """One worker process: a Consumer until ``stop`` is set, SIGTERM, or its duration."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    setup_logging(log_level)
    try:
        call = load_processor(processor) if isinstance(processor, str) else processor
        consumer = Consumer(config, call, on_result=print_json_line if print_results else None)
        signal.signal(signal.SIGTERM, lambda *_: consumer.close())
        done = threading.Event()
        watcher = threading.Thread(target=_watch, args=(stop, done, consumer), daemon=True)
        watcher.start()
        try:
            consumer.run()
        finally:
            done.set()
            watcher.join()
    except FrameBrokerError as exc:
        log.error("worker %s: %s", config.name, exc)
        sys.exit(1)


def _watch(stop: MpEvent, done: threading.Event, consumer: Any) -> None:
    while not done.is_set():
        if stop.wait(POLL_S):
            consumer.close()
            return
