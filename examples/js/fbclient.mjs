#!/usr/bin/env node
// fbclient.mjs: a framebroker client on Node.js (zeromq + @msgpack/msgpack), from docs/protocol.md.
//
//   node fbclient.mjs subscribe --stream ID [--broker HOST[,HOST...]] [--name NAME] [--count N]
//   node fbclient.mjs work --group NAME --stream PATTERN [--broker HOST] [--name NAME] [--count N]
//   node fbclient.mjs streams [--broker HOST] [--json]
//   node fbclient.mjs vectors DIR
//
// Same behaviour and output as examples/c/fbclient (see its header comment), `work` (a worker of
// a work group, protocol v1.2) included: same output as `subscribe`.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";

import * as zmq from "zeromq";

import { brokerEndpoints, connectAll, splitList } from "./brokerset.mjs";

import {
  ProtocolError,
  canonical,
  decodeFrame,
  decodeReply,
  decodeRequest,
  decodeResult,
  decodeWorkRequest,
  encodeRequest,
  encodeResult,
  encodeWorkRequest,
  frameView,
  isReply,
  payloadCheck,
  toPlain,
} from "./protocol.mjs";

const USAGE = `usage: node fbclient.mjs subscribe --stream ID [--name NAME] [--count N] [--timeout SECONDS] [--plain-sub]
                                   [--broker HOST[,HOST...] | --work EP[,EP...] --results EP
                                    | --plain-sub --publish EP[,EP...] --results EP]
       node fbclient.mjs work --group NAME --stream PATTERN [--name NAME] [--count N] [--timeout SECONDS]
                              [--broker HOST | --work EP --results EP]
       node fbclient.mjs streams [--broker HOST | --control EP] [--json] [--timeout SECONDS]
       node fbclient.mjs vectors DIR
endpoints default to tcp://127.0.0.1:5556 (publish), :5557 (results), :5558 (control), :5560 (work)`;

function parseOptions(args) {
  const o = {
    stream: null,
    publish: "tcp://127.0.0.1:5556",
    results: "tcp://127.0.0.1:5557",
    control: "tcp://127.0.0.1:5558",
    work: "tcp://127.0.0.1:5560",
    group: null,
    plainSub: false,
    workGiven: false,
    publishGiven: false,
    name: "js-client",
    count: 0,
    timeout: 10,
    json: false,
  };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === "--json") {
      o.json = true;
      continue;
    }
    if (flag === "--plain-sub") {
      o.plainSub = true;
      continue;
    }
    const value = args[++i];
    if (flag === "--broker" && value !== undefined) {
      // default port numbers; a broker set (b1,b2,b3): publish on every host, the sink on the first
      const hosts = splitList(value);
      [o.publish, o.control, o.work] = [5556, 5558, 5560].map((p) => brokerEndpoints(hosts, p).join(","));
      [o.results] = brokerEndpoints(hosts, 5557);
      o.workGiven = o.publishGiven = true;
      continue;
    }
    const key = flag.replace(/^--/, "");
    if (value === undefined || !(key in o)) throw new Error(USAGE);
    if (key === "work") o.workGiven = true;
    if (key === "publish") o.publishGiven = true;
    o[key] = ["count", "timeout"].includes(key) ? Number(value) : value;
  }
  return o;
}

const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));

const newCounts = () => ({ decoded: 0, malformed: 0, duplicates: 0, badPayload: 0, sent: 0, unsent: 0 });

// One frame message: decode and check it, push a result to the sink, print a JSON line.
async function handleFrame(msg, o, n, push, last) {
  const tStart = nowNs();
  const began = process.hrtime.bigint();
  let frame;
  try {
    frame = decodeFrame(msg);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    n.malformed++;
    console.error(`fbclient.mjs: dropped a malformed frame message (${err.kind}, ${msg.length} bytes)`);
    return;
  }
  const h = frame.header;
  const previous = last[h.stream];
  if (previous && h.session === previous.session && h.seq <= previous.seq) {
    n.duplicates++; // the broker's newest-frame re-send, seen twice
    return;
  }
  last[h.stream] = { session: h.session, seq: h.seq };
  const check = payloadCheck(frame);
  if (check === "ok") n.decoded++;
  else {
    n.badPayload++;
    console.error(`fbclient.mjs: seq ${h.seq}: payload check failed (${check})`);
  }
  const result = {
    client: "js",
    payload_bytes: frame.payload.length,
    payload_check: check,
    shape: h.shape,
  };
  const message = encodeResult({
    consumer: o.name,
    stream: h.stream,
    session: h.session,
    seq: h.seq,
    t_capture: h.t_capture,
    t_start: tStart,
    duration_ns: process.hrtime.bigint() - began,
    result,
  });
  try {
    await push.send(message);
    n.sent++;
  } catch {
    n.unsent++;
  }
  const ageMs = Number(tStart - h.t_capture) / 1e6;
  console.log(
    `{"stream":"${h.stream}","session":${h.session},"seq":${h.seq},"encoding":"${h.encoding}",` +
      `"shape":[${h.shape.join(",")}],"payload_bytes":${frame.payload.length},` +
      `"payload_check":"${check}","age_ms":${ageMs.toFixed(3)}}`,
  );
}

const summary = (n) =>
  `fbclient.mjs: ${n.decoded} frames decoded, ${n.malformed} malformed, ${n.duplicates} duplicates, ` +
  `${n.badPayload} bad payloads; ${n.sent} results sent, ${n.unsent} not sent`;

// `work` and `streams` talk to one broker; a set needs the spec's worker and listing rules.
function oneBroker(endpoints, command) {
  if (splitList(endpoints).length === 1) return true;
  console.error(`fbclient.mjs: ${command} talks to one broker; of a set, give one (--work/--control EP)`);
  return false;
}

// --- subscribe ------------------------------------------------------------------------------

// By default a feed (protocol v1.6): frames by credit from the work port of every broker, so
// a slow link never holds a queue of old frames. --plain-sub (or --publish given without
// --work: the work port is then unknown) takes the plain SUB path below.
async function subscribe(o) {
  if (!o.stream) throw new Error(USAGE);
  if (!o.plainSub && !(o.publishGiven && !o.workGiven)) return feed(o);
  // Options in the constructor are set before connect: CONFLATE keeps the newest whole frame.
  const sub = new zmq.Subscriber({ conflate: true, linger: 0, receiveTimeout: o.timeout * 1000 });
  const push = new zmq.Push({ linger: 2000, sendTimeout: 0 }); // never block on a dead sink
  connectAll(sub, o.publish); // one broker, or every broker of a set
  push.connect(o.results);
  sub.subscribe(Buffer.from(`${o.stream}\0`)); // "ID\0": exactly this stream
  let stopping = false;
  const stop = () => {
    stopping = true;
    sub.close();
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  const n = newCounts();
  const last = {};
  let status = 0;
  while (!stopping && (o.count <= 0 || n.decoded < o.count)) {
    let msg;
    try {
      [msg] = await sub.receive();
    } catch (err) {
      if (!stopping) {
        const what = err.code === "EAGAIN" ? `no frame of ${o.stream} within ${o.timeout}s` : err;
        console.error(`fbclient.mjs: ${what}`);
        status = 1;
      }
      break;
    }
    await handleFrame(msg, o, n, push, last);
  }
  console.error(summary(n));
  if (!sub.closed) sub.close();
  push.close();
  return status;
}

// --- subscribe as a feed (protocol v1.6, "Feeds") -----------------------------------------------

// One DEALER per broker (a DEALER connected to several would spread its requests), each with
// credit 1: ask, take the frame, ask again; repeat the request every second while nothing comes.
// Credit 1 per broker is the simplest rule that can never queue (the reference consumer
// adapts its credit to the path: docs/protocol.md, "Feeds").
async function feed(o) {
  const push = new zmq.Push({ linger: 2000, sendTimeout: 0 });
  push.connect(o.results);
  const members = splitList(o.work).map((endpoint) => {
    const dealer = new zmq.Dealer({ linger: 0, receiveTimeout: 1000 });
    dealer.connect(endpoint);
    return { dealer, endpoint, received: 0 };
  });
  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const n = newCounts();
  const last = {};
  let status = 0;
  let lastFrame = Date.now();
  const done = () => stopping || (o.count > 0 && n.decoded >= o.count);
  const ask = (m) =>
    m.dealer.send(encodeWorkRequest({ op: "feed", streams: [o.stream], credit: 1, received: m.received, name: o.name }));
  // frames of one stream from two brokers (a stream that moved) are ordered by (session, seq)
  // in handleFrame; one chain of handling keeps the output in arrival order
  let chain = Promise.resolve();
  const loop = async (m) => {
    while (!done()) {
      await ask(m);
      let msg;
      try {
        [msg] = await m.dealer.receive();
      } catch (err) {
        if (err.code !== "EAGAIN") throw err;
        if (Date.now() - lastFrame >= o.timeout * 1000 && !stopping) {
          if (status === 0) console.error(`fbclient.mjs: no frame of ${o.stream} within ${o.timeout}s`);
          status = 1;
          stopping = true;
        }
        continue; // heartbeat: the same request again
      }
      if (isReply(msg)) {
        console.error(`fbclient.mjs: the broker at ${m.endpoint} refused this feed: ${decodeReply(msg).error}`);
        status = 1;
        stopping = true;
        break;
      }
      m.received++;
      lastFrame = Date.now();
      chain = chain.then(() => (done() ? undefined : handleFrame(msg, o, n, push, last)));
      await chain;
    }
  };
  await Promise.all(members.map(loop));
  for (const m of members) {
    await m.dealer.send(encodeWorkRequest({ op: "leave" }));
    m.dealer.close();
  }
  console.error(summary(n));
  push.close();
  return status;
}

// --- work (a worker of a work group, protocol v1.2) --------------------------------------------

// Ask for one frame (credit 1), process it, ask again; repeat the request every second while
// nothing comes (the heartbeat). The broker sends only what was asked for.
async function work(o) {
  if (!o.stream || !o.group) throw new Error(USAGE);
  if (!oneBroker(o.work, "work")) return 2;
  const dealer = new zmq.Dealer({ linger: 0, receiveTimeout: 1000 });
  const push = new zmq.Push({ linger: 2000, sendTimeout: 0 });
  dealer.connect(o.work);
  push.connect(o.results);
  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  const n = newCounts();
  const last = {};
  const ready = { group: o.group, streams: [o.stream], credit: 1, received: 0, name: o.name };
  let status = 0;
  let idle = 0; // seconds without a frame
  while (!stopping && (o.count <= 0 || n.decoded < o.count)) {
    await dealer.send(encodeWorkRequest(ready));
    let msg;
    try {
      [msg] = await dealer.receive();
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      if (++idle >= o.timeout) {
        console.error(`fbclient.mjs: no frame of ${o.stream} within ${o.timeout}s`);
        status = 1;
        break;
      }
      continue; // heartbeat: the same request again
    }
    idle = 0;
    if (isReply(msg)) {
      console.error(`fbclient.mjs: the broker refused this worker: ${decodeReply(msg).error}`);
      status = 1;
      break;
    }
    ready.received++;
    await handleFrame(msg, o, n, push, last);
  }
  await dealer.send(encodeWorkRequest({ op: "leave" }));
  console.error(summary(n));
  dealer.close();
  push.close();
  return status;
}

// --- streams (control) ------------------------------------------------------------------------

async function streams(o) {
  if (!oneBroker(o.control, "streams")) return 2;
  const req = new zmq.Request({ linger: 0, receiveTimeout: o.timeout * 1000 });
  req.connect(o.control);
  try {
    await req.send(encodeRequest("streams"));
    let msg;
    try {
      [msg] = await req.receive();
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      console.error(`fbclient.mjs: no reply from ${o.control} within ${o.timeout}s (is the broker running?)`);
      return 1;
    }
    const reply = decodeReply(msg);
    if (!reply.ok) {
      console.error(`fbclient.mjs: broker error: ${reply.error}`);
      return 1;
    }
    if (!Array.isArray(reply.streams)) {
      console.error("fbclient.mjs: reply has no streams array");
      return 1;
    }
    if (o.json) {
      console.log(canonical(reply));
      return 0;
    }
    const pad = (text, width) => String(text).padEnd(width);
    console.log(`${pad("STREAM", 24)} ${pad("STATE", 6)} ${pad("ENC", 5)} ${pad("SHAPE", 14)} SEQ FPS AGE_S`);
    for (const s of reply.streams.map(toPlain)) {
      const shape = Array.isArray(s.shape) ? s.shape.join("x") : "?";
      console.log(
        `${pad(s.stream, 24)} ${pad(s.state, 6)} ${pad(s.encoding, 5)} ${pad(shape, 14)} ` +
          `${s.seq} ${Number(s.fps).toFixed(1)} ${Number(s.age_s).toFixed(2)}`,
      );
    }
    return 0;
  } finally {
    req.close();
  }
}

// --- vectors --------------------------------------------------------------------------------------

const DECODERS = {
  frame: (buf) => frameView(decodeFrame(buf)),
  result: decodeResult,
  request: decodeRequest,
  reply: decodeReply,
  work: decodeWorkRequest,
};

// A "parts-" vector is a whole ZeroMQ message: each part as a uint32 big-endian length and its
// bytes. Every message of the protocol is one frame: several parts are rejected ("multipart").
function splitParts(buf) {
  const parts = [];
  let at = 0;
  while (at < buf.length) {
    if (buf.length - at < 4) throw new Error("bad parts file");
    const size = buf.readUInt32BE(at);
    if (size > buf.length - at - 4) throw new Error("bad parts file");
    parts.push(buf.subarray(at + 4, at + 4 + size));
    at += 4 + size;
  }
  return parts;
}

function outcome(name, buf) {
  if (name.startsWith("parts-")) {
    const parts = splitParts(buf);
    return parts.length === 1 ? outcome(name.slice(6), parts[0]) : `{"error":"multipart"}`;
  }
  const decode = DECODERS[name.split("-", 1)[0]];
  try {
    return `{"decoded":${canonical(decode(buf))}}`;
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return `{"error":"${err.kind}"}`;
  }
}

function vectors(dir) {
  const names = readdirSync(dir)
    .filter((f) => f.endsWith(".bin"))
    .map((f) => f.slice(0, -4))
    .sort();
  let passed = 0;
  let failed = 0;
  for (const name of names) {
    const got = outcome(name, readFileSync(join(dir, `${name}.bin`)));
    const want = readFileSync(join(dir, `${name}.json`), "utf8").replace(/\r?\n$/, "");
    if (got === want) passed++;
    else {
      failed++;
      console.log(`FAIL ${name}\n  got:  ${got}\n  want: ${want}`);
    }
  }
  console.log(`vectors: ${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

async function main(argv) {
  const [command, ...rest] = argv;
  if (command === "vectors" && rest.length === 1) return vectors(rest[0]);
  if (command === "subscribe") return subscribe(parseOptions(rest));
  if (command === "streams") return streams(parseOptions(rest));
  if (command === "work") return work(parseOptions(rest));
  console.error(USAGE);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(err.message === USAGE ? USAGE : err);
    process.exitCode = 2;
  },
);
