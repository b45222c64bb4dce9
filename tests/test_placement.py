"""Placement by rendezvous hashing and the broker-set parsing/resolving (pure, no sockets)."""

from __future__ import annotations

import socket

import pytest

from framebroker.brokerset import EndpointSet, expand, member_id
from framebroker.config import broker_endpoints, parse_broker, parse_endpoints
from framebroker.errors import ConfigError
from framebroker.placement import moved, owner, ranking, weight
from tests.conftest import ROOT

# docs/protocol.md "Broker sets" quotes these: a client in another language checks them.
SET3 = ["10.0.0.1:5555", "10.0.0.2:5555", "10.0.0.3:5555"]
VECTORS = {  # stream -> (weights of SET3 in order, ranking)
    "cam1": (
        (0xA0E7F18DE662CB5D, 0x873896F9D3DEAFD6, 0xD554DBDB7472E89F),
        ("10.0.0.3:5555", "10.0.0.1:5555", "10.0.0.2:5555"),
    ),
    "site1/door": (
        (0x3348D4B13A56F26B, 0xF8204F4E18E9E611, 0xD2657A0B3E099279),
        ("10.0.0.2:5555", "10.0.0.3:5555", "10.0.0.1:5555"),
    ),
}


@pytest.mark.parametrize("stream", sorted(VECTORS))
def test_vectors(stream):
    weights, ranked = VECTORS[stream]
    assert tuple(weight(m, stream) for m in SET3) == weights
    assert tuple(ranking(stream, SET3)) == ranked
    spec = (ROOT / "docs" / "protocol.md").read_text()
    for w in weights:
        assert f"{w:016x}" in spec, f"docs/protocol.md lacks the vector weight {w:016x}"


def test_ranking_is_total_and_owner_skips_dead_brokers():
    ranked = ranking("cam1", SET3)
    assert sorted(ranked) == sorted(SET3)
    assert owner("cam1", SET3) == ranked[0]
    assert owner("cam1", SET3, live={ranked[1], ranked[2]}) == ranked[1]
    assert owner("cam1", SET3, live={ranked[2]}) == ranked[2]
    # nobody live: keep to the first choice (it gets the frames as soon as it is back)
    assert owner("cam1", SET3, live=set()) == ranked[0]
    assert owner("cam1", []) is None


def test_only_about_one_nth_of_the_streams_move():
    streams = [f"site{i // 10}/cam{i}" for i in range(3000)]
    four = [*SET3, "10.0.0.4:5555"]
    joined = moved(streams, SET3, four)
    assert 0.20 < len(joined) / len(streams) < 0.30  # 1/4 expected
    assert all(owner(s, four) == "10.0.0.4:5555" for s in joined)  # only to the newcomer
    left = moved(streams, SET3, SET3[:2])
    assert 0.28 < len(left) / len(streams) < 0.39  # 1/3 expected
    assert all(owner(s, SET3) == SET3[2] for s in left)  # only the leaver's streams


def test_owners_spread_evenly():
    counts = {m: 0 for m in SET3}
    for i in range(3000):
        counts[owner(f"cam{i}", SET3)] += 1  # type: ignore[index]
    assert all(900 < c < 1100 for c in counts.values()), counts


def test_parse_broker_lists():
    assert parse_broker("broker") == ("broker",)
    assert parse_broker(" b1, b2,b3,b1 ") == ("b1", "b2", "b3")
    assert parse_broker("[::1],10.0.0.7") == ("::1", "10.0.0.7")
    for bad in ("", " , ", "a b", "tcp://x"):
        with pytest.raises(ConfigError):
            parse_broker(bad)
    assert broker_endpoints("b1,b2", 5556) == "tcp://b1:5556,tcp://b2:5556"
    assert broker_endpoints("::1", 5556) == "tcp://[::1]:5556"
    assert parse_endpoints("tcp://a:1, tcp://b:2") == ("tcp://a:1", "tcp://b:2")
    with pytest.raises(ConfigError):
        parse_endpoints("tcp://a:1,nonsense")


def fake_dns(table: dict[str, list[str]]):
    def lookup(host: str, port: int, type: int = 0):
        if host not in table:
            raise socket.gaierror(f"{host}: unknown")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, type, 6, "", (a, port))
            for a in table[host]
        ]

    return lookup


def test_a_name_with_several_addresses_is_a_set_and_is_re_resolved():
    dns = {"tasks.broker": ["10.0.0.3", "10.0.0.1", "10.0.0.1"]}
    brokers = EndpointSet("tcp://tasks.broker:5555", lookup=fake_dns(dns))
    assert brokers.dynamic and brokers.resolve()
    assert brokers.members() == ("tcp://10.0.0.1:5555", "tcp://10.0.0.3:5555")
    assert not brokers.single
    dns["tasks.broker"] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]  # a replica added
    version = brokers.version
    assert brokers.resolve() and brokers.version == version + 1
    assert [member_id(e) for e in brokers.members()] == SET3
    del dns["tasks.broker"]  # a DNS hiccup: the set stays as it was
    assert not brokers.resolve() and len(brokers.members()) == 3


def test_a_set_of_one_is_used_as_given():
    dns = {"broker": ["10.0.0.9"], "localhost": ["127.0.0.1", "::1"]}
    for spec in ("tcp://broker:5555", "tcp://localhost:5555", "ipc:///tmp/x", "tcp://nowhere:1"):
        one = EndpointSet(spec, lookup=fake_dns(dns))
        one.resolve()
        assert one.members() == (spec,) and one.single
    # IPv6 only when a name has no IPv4 address
    assert expand("tcp://v6:1", fake_dns({"v6": ["fd00::7"]})) == ("tcp://[fd00::7]:1",)


def test_a_list_of_names_expands_each():
    dns = {"b1": ["10.0.0.1"], "b2": ["10.0.0.2", "10.0.0.3"]}
    brokers = EndpointSet("tcp://b1:5556,tcp://b2:5556", lookup=fake_dns(dns))
    brokers.resolve()
    assert brokers.members() == tuple(f"tcp://{m[:-5]}:5556" for m in SET3)
