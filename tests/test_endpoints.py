"""Host sets (framebroker/endpoints.py): lists and DNS names to endpoints, re-resolved."""

from __future__ import annotations

import socket

import pytest

from framebroker.consumers import ConsumerConfig
from framebroker.endpoints import EndpointSet, parse_hosts, split_host_port
from framebroker.errors import ConfigError


class Dns:
    """A resolver answering from a table the test changes (the system resolver's shape)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table

    def __call__(self, host, port, type=0):
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, type, 6, "", (a, port)) for a in self.table[host]]


def test_lists_hosts_and_ports():
    assert parse_hosts(" a, b:5561 ,[::1]:7") == ("a", "b:5561", "[::1]:7")
    assert split_host_port("a", 5559) == ("a", 5559)
    assert split_host_port("b:5561", 5559) == ("b", 5561)
    assert split_host_port("[::1]:7", 5559) == ("::1", 7)
    assert split_host_port("::1", 5559) == ("::1", 5559)
    for bad in ("", " , ", "a:0", "a:x", "a:70000", "[::1", "tcp://a"):
        with pytest.raises(ConfigError):
            parse_hosts(bad)


def test_a_dns_name_gives_every_replica_and_follows_changes():
    dns = Dns({"tasks.sink": ["10.0.0.2", "10.0.0.3"], "db": ["10.0.0.9"]})
    sinks = EndpointSet("tasks.sink,127.0.0.1:6000", 5559, resolver=dns)
    assert sinks.refresh() == (
        ["tcp://10.0.0.2:5559", "tcp://10.0.0.3:5559", "tcp://127.0.0.1:6000"],
        [],
    )
    dns.table["tasks.sink"] = ["10.0.0.3", "10.0.0.4"]  # a replica replaced
    assert sinks.refresh() == (["tcp://10.0.0.4:5559"], ["tcp://10.0.0.2:5559"])
    del dns.table["tasks.sink"]  # a failed lookup keeps what the name had
    assert sinks.refresh() == ([], [])
    assert "tasks.sink" in sinks.failures
    assert sinks.endpoints[-1] == "tcp://127.0.0.1:6000"


def test_a_name_not_resolvable_yet_contributes_nothing():
    dns = Dns({})
    sinks = EndpointSet(["sink1", "[::1]:6000"], 5559, resolver=dns)
    assert sinks.refresh() == (["tcp://[::1]:6000"], [])
    dns.table["sink1"] = ["10.1.1.1"]
    assert sinks.refresh() == (["tcp://10.1.1.1:5559"], [])


def test_consumer_sink_set_config():
    config = ConsumerConfig(sink="s1,s2:6001")
    assert config.sink_port() == 5559
    assert ConsumerConfig(sink="s1", results="tcp://h:7000").sink_port() == 7002
    with pytest.raises(ConfigError, match="acknowledged results"):
        ConsumerConfig(sink="s1", acked_results=None)
    with pytest.raises(ConfigError):
        ConsumerConfig(sink="a:b:c:d/")
