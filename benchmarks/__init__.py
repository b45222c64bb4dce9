"""framebroker's benchmark suite: ``python -m benchmarks`` (``--quick`` for CI).

Five scenarios, each running ours and its references back to back on loopback with the
same payloads, each printing a table of absolute figures and ratios (ours / reference):

- :mod:`benchmarks.freshness`: frame age for a 100 ms/frame consumer of 30 fps streams,
  ours vs imagezmq PUB/SUB;
- :mod:`benchmarks.throughput`: msgs/s, GB/s and CPU through our broker vs ``zmq.proxy``
  vs direct PUB->SUB, and tcp:// vs ipc://;
- :mod:`benchmarks.latency`: send -> receive p50/p99, idle and under load;
- :mod:`benchmarks.scale`: streams 1 -> 500 and subscribers 1 -> 16;
- :mod:`benchmarks.codec`: JPEG encode/decode, ours vs cv2 vs simplejpeg.

Measured programs run in their own processes (:mod:`benchmarks.roles`, started and
stopped by :mod:`benchmarks.procs`); results go to JSON, PNG plots and
``docs/benchmarks.md`` (:mod:`benchmarks.docs`). Benchmarks are Linux-only (CPU time
comes from /proc). Nothing here asserts speed; ``tests/test_benchmarks.py`` only checks
that quick mode produces numbers.
"""
