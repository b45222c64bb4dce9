"""Several "machines" on this one: Linux network namespaces on a private switch.

    with Network(tmp_path, ["a", "b", "c"], names={"broker": "a"}) as net:
        net["a"].start(*framebroker("broker"))          # runs inside namespace a
        net["c"].run(*framebroker("streams", "--broker", "broker"))
        net["b"].link(up=False)                         # unplug b's cable; link(up=True) back

Each host is a namespace with one interface, its own address in a private test range
(10.77.N.0/24) and its own /etc/hosts (``/etc/netns/NS/hosts``, which ``ip netns exec``
mounts over /etc/hosts) naming every host and the ``names`` aliases. The hosts' cables
end on a bridge that lives in a namespace of its own, the "switch": nothing of the test
network touches the machine's own namespace (no routes, no addresses, no firewall rules;
Docker's FORWARD policy does not see it), and names carry a random tag, so parallel runs
never clash. :meth:`Network.close` (also on any error) stops every process it started, by
PID, deletes the namespaces (which takes their interfaces and the bridge with them) and the
/etc/netns entries it made.

Needs root and iproute2 (:func:`missing` says what is absent).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from tests.conftest import stop_process

NETNS_ETC = Path("/etc/netns")


def missing() -> str | None:
    """What this machine lacks to build a Network, or None."""
    if not sys.platform.startswith("linux"):
        return "Linux network namespaces"
    if os.geteuid() != 0:
        return "root (to create network namespaces)"
    if shutil.which("ip") is None:
        return "iproute2 (the `ip` command)"
    return None


def framebroker(*args: str) -> list[str]:
    """The command line of ``framebroker ARGS`` with this test run's Python."""
    return [sys.executable, "-m", "framebroker", *args]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


class Host:
    """One machine: a namespace, its interface and address, a working directory."""

    def __init__(self, net: Network, name: str, index: int) -> None:
        self.net = net
        self.name = name
        self.address = f"{net.subnet}.{10 + index}"
        self.netns = f"{net.tag}-{name}"
        self.device = f"{net.tag}h{index}"  # inside the namespace; its peer is on the switch
        self.workdir = net.workdir / name
        self.procs: list[subprocess.Popen[str]] = []

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(self, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a command on this host to completion (stdout and stderr captured)."""
        return subprocess.run(
            self.command(*argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.workdir,
            env=self.net.env,
        )

    def start(self, *argv: str) -> subprocess.Popen[str]:
        """Start a long-running command on this host; its output goes to a log file.

        ``ip netns exec`` execs the command, so the PID is the command's own."""
        index = len(self.net.procs)
        label = "-".join(a for a in argv[3:5] if not a.startswith("-")) or Path(argv[0]).name
        log_path = self.net.workdir / f"{self.name}-{index}-{label.replace('/', '_')}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                self.command(*argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=self.workdir,
                env=self.net.env,
            )
        self.net.procs.append((proc, log_path))
        self.procs.append(proc)
        return proc

    def link(self, *, up: bool) -> None:
        """Plug (up) or unplug (down) this host's network cable."""
        ip("-n", self.netns, "link", "set", self.device, "up" if up else "down")

    def throttle(self, rate: str, *, burst: str = "32kb", latency: str = "100ms") -> None:
        """Make this host's cable slow towards the host (a token bucket: ``tc ... tbf``).

        Shapes what the switch sends to the host (downloads), e.g. ``rate="4mbit"``: the
        host's own sending is untouched. Needs ``tc`` (iproute2); netem is not required.
        """
        port = f"{self.device}s"
        subprocess.run(
            ["ip", "netns", "exec", self.net.switch, "tc", "qdisc", "add", "dev", port,
             "root", "tbf", "rate", rate, "burst", burst, "latency", latency],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip


class Network:
    """Hosts ``names`` on one switch; ``aliases`` maps extra host names to hosts."""

    def __init__(
        self,
        workdir: Path,
        hosts: Sequence[str],
        aliases: Mapping[str, str] | None = None,
        *,
        tag: str = "fb",
        subnet: str | None = None,
    ) -> None:
        self.workdir = workdir
        # interface names must stay under 16 chars: tag + 6 hex + "h" + index + "s"
        self.tag = tag + secrets.token_hex(3)
        self.subnet = subnet or f"10.77.{secrets.randbelow(254) + 1}"
        self.hosts = {name: Host(self, name, i) for i, name in enumerate(hosts)}
        self.aliases = dict(aliases or {})
        self.switch = f"{self.tag}-sw"
        self.procs: list[tuple[subprocess.Popen[str], Path]] = []
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._namespaces: list[str] = []
        self._etc_dirs: list[Path] = []
        self._made_netns_etc = False

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Network:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def hosts_file(self) -> str:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for host in self.hosts.values():
            names = [host.name, *(a for a, h in self.aliases.items() if h == host.name)]
            lines.append(f"{host.address}\t{' '.join(names)}")
        return "\n".join(lines) + "\n"

    def _add_namespace(self, name: str) -> None:
        ip("netns", "add", name)
        self._namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "switch", "type", "bridge")
        ip("-n", self.switch, "link", "set", "switch", "up")
        if not NETNS_ETC.exists():
            NETNS_ETC.mkdir()
            self._made_netns_etc = True
        hosts_file = self.hosts_file()
        for host in self.hosts.values():
            host.workdir.mkdir(parents=True, exist_ok=True)
            self._add_namespace(host.netns)
            port = f"{host.device}s"
            ip("link", "add", host.device, "type", "veth", "peer", "name", port)
            # Move both ends out of our own namespace at once (until then they live here).
            try:
                ip("link", "set", host.device, "netns", host.netns)
            finally:
                ip("link", "set", port, "netns", self.switch, check=False)
            ip("-n", self.switch, "link", "set", port, "master", "switch")
            ip("-n", self.switch, "link", "set", port, "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.device)
            ip("-n", host.netns, "link", "set", host.device, "up")
            etc = NETNS_ETC / host.netns
            etc.mkdir()
            self._etc_dirs.append(etc)
            (etc / "hosts").write_text(hosts_file)

    def stop(self, proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
        return stop_process(proc, timeout)

    def output(self, proc: subprocess.Popen[str]) -> str:
        (log,) = [path for p, path in self.procs if p is proc]
        return log.read_text()

    def close(self) -> None:
        errors: list[str] = []
        for proc, _ in reversed(self.procs):
            self.stop(proc)
        for name in reversed(self._namespaces):
            _kill_left_over(name)
            result = ip("netns", "del", name, check=False)
            if result.returncode != 0:
                errors.append(f"ip netns del {name}: {result.stderr.strip()}")
        self._namespaces.clear()
        for etc in self._etc_dirs:
            shutil.rmtree(etc, ignore_errors=True)
        self._etc_dirs.clear()
        if self._made_netns_etc:
            _rmdir_if_empty(NETNS_ETC)
        # Veths not yet moved into a namespace when building failed live here: remove them.
        for host in self.hosts.values():
            ip("link", "del", host.device, check=False)
        if errors:
            raise RuntimeError("; ".join(errors))


def _kill_left_over(netns: str) -> None:
    """SIGKILL processes still inside ``netns`` (children of ours; the namespace is ours)."""
    result = ip("netns", "pids", netns, check=False)
    for pid in _pids(result.stdout.split()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids(words: Iterable[str]) -> list[int]:
    return [int(w) for w in words if w.isdigit()]


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
