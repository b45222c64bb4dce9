"""Prometheus metrics scraped from real CLI processes (broker, sink, producer, consumer,
viewer) started with --metrics-port / FRAMEBROKER_METRICS_PORT on random ports, plus the
JSON log format."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from framebroker.config import work_endpoint
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.slow


def scrape(port: int) -> dict[str, list]:
    """{sample name: [(labels, value), ...]} from http://127.0.0.1:PORT/metrics"""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return {}
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    matching = [v for lab, v in samples.get(name, []) if labels.items() <= lab.items()]
    return sum(matching)


def test_every_service_exposes_its_metrics(cli, tmp_path):
    ep = {n: f"tcp://127.0.0.1:{free_port()}" for n in ("ingest", "publish", "control", "results")}
    port = {n: free_port() for n in ("broker", "sink", "produce", "consume", "view")}
    cli.start(
        "broker",
        *("--ingest", ep["ingest"], "--publish", ep["publish"], "--control", ep["control"]),
        "--metrics-port",
        str(port["broker"]),
    )
    db = str(tmp_path / "r.sqlite")
    cli.start("sink", "--results", ep["results"], "--db", db, "--metrics-port", str(port["sink"]))
    cli.start(
        "produce",
        "test:160x120@20",
        *("--stream", "m/cam", "--ingest", ep["ingest"]),
        env={"FRAMEBROKER_METRICS_PORT": str(port["produce"])},  # the environment works too
    )
    cli.start(
        "consume",
        "motion",
        *("--name", "mot", "--streams", "m/", "--publish", ep["publish"]),
        *("--results", ep["results"], "--metrics-port", str(port["consume"])),
    )
    cli.start(  # a worker of a work group: the broker's group metrics
        "consume",
        "stats",
        *("--name", "grp", "--group", "g1", "--streams", "m/", "--results", ep["results"]),
        *("--work", work_endpoint(ep["control"])),
    )
    cli.start(
        "view",
        *("--publish", ep["publish"], "--control", ep["control"], "--db", db),
        *("--http-host", "127.0.0.1", "--http-port", str(free_port())),
        "--metrics-port",
        str(port["view"]),
    )

    def stored() -> dict | None:
        """the sink stored results and the consumer observed frame ages"""
        sink, consumer = scrape(port["sink"]), scrape(port["consume"])
        ok = value(sink, "framebroker_sink_stored_total") >= 5
        ok = ok and value(consumer, "framebroker_consumer_frame_age_seconds_count") >= 5
        return {"sink": sink, "consume": consumer} if ok else None

    got = wait_until(stored, timeout=30)

    def worker_served() -> dict | None:
        """the broker handed frames to the group's worker"""
        broker = scrape(port["broker"])
        return broker if value(broker, "framebroker_broker_group_dispatched_total") > 0 else None

    broker = wait_until(worker_served, timeout=20)
    assert value(broker, "framebroker_broker_frames_in_total", stream="m/cam") > 0
    assert value(broker, "framebroker_broker_bytes_in_total", stream="m/cam") > 0
    assert value(broker, "framebroker_broker_stream_live", stream="m/cam") == 1
    assert value(broker, "framebroker_broker_frames_out_total") > 0
    assert value(broker, "framebroker_broker_subscribers") >= 1
    assert "framebroker_broker_disconnects_total" in broker
    assert value(broker, "framebroker_broker_group_workers", group="g1") == 1
    assert value(broker, "framebroker_broker_group_dispatched_total", group="g1") > 0
    assert value(broker, "framebroker_broker_workers_joined_total") == 1
    assert "framebroker_broker_work_errors_total" in broker

    assert value(got["sink"], "framebroker_sink_received_total") >= 5
    assert "framebroker_sink_pending" in got["sink"]
    assert value(got["sink"], "framebroker_sink_malformed_total") == 0

    consumer = got["consume"]
    assert value(consumer, "framebroker_consumer_processed_total", consumer="mot") >= 5
    assert "framebroker_consumer_skipped_total" in consumer
    buckets = consumer["framebroker_consumer_frame_age_seconds_bucket"]
    assert {lab["stream"] for lab, _ in buckets} == {"m/cam"}
    assert value(consumer, "framebroker_consumer_processing_seconds_count", stream="m/cam") >= 5

    producer = scrape(port["produce"])
    assert value(producer, "framebroker_producer_published_total", stream="m/cam") > 0
    assert value(producer, "framebroker_producer_state", stream="m/cam", state="streaming") == 1
    assert "framebroker_producer_source_failures_total" in producer

    view = wait_until(
        lambda: (
            (s := scrape(port["view"]))
            and value(s, "framebroker_viewer_frames_in_total", stream="m/cam") > 0
            and s
        )
    )
    assert "framebroker_viewer_clients" in view


def test_json_logs_by_flag_and_environment(cli):
    control = f"tcp://127.0.0.1:{free_port()}"
    args = ("--ingest", f"tcp://127.0.0.1:{free_port()}", "--publish", "tcp://127.0.0.1:0")
    by_flag = cli.start("--log-format", "json", "broker", *args, "--control", control)
    wait_until(lambda: "broker listening" in cli.output(by_flag))
    cli.stop(by_flag)
    lines = [json.loads(line) for line in cli.output(by_flag).splitlines() if line.strip()]
    assert {"ts", "level", "logger", "msg"} <= lines[0].keys()
    assert any("broker listening" in line["msg"] for line in lines)

    by_env = cli.start(
        "broker", *args, "--control", control, env={"FRAMEBROKER_LOG_FORMAT": "json"}
    )
    wait_until(lambda: "broker listening" in cli.output(by_env))
    cli.stop(by_env)
    assert all(json.loads(line) for line in cli.output(by_env).splitlines() if line.strip())
