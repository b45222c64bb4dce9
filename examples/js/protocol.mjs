// framebroker protocol v1 in JavaScript: decoders, checks, encoders, canonical JSON.
//
// Written from docs/protocol.md alone; tests/vectors/ checks it (node fbclient.mjs vectors DIR).
// Uses @msgpack/msgpack with two strictness fixes the spec needs (StrictDecoder below).
import { Decoder, encode } from "@msgpack/msgpack";

export const MAX_STREAM_ID = 200;
export const MAX_HEADER = 65536;
export const MAX_DIMENSION = 1048575n;
const ENCODINGS = ["jpeg", "raw"];
const SAMPLE_SIZE = { uint8: 1n, uint16: 2n, float32: 4n };
const OPS = ["ping", "streams", "stats", "groups"];

/** A rejected message; `kind` is the spec's error kind. */
export class ProtocolError extends Error {
  constructor(kind, message) {
    super(`${kind}: ${message}`);
    this.kind = kind;
  }
}

/** A msgpack float (float 32 or 64), kept apart from integers. */
export class MsgFloat {
  constructor(value) {
    this.value = value;
  }
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true });

// @msgpack/msgpack decodes msgpack integers and floats to the same JS number, and replaces
// invalid UTF-8 with U+FFFD. Protocol v1 types fields strictly ("seq": 1.0 is invalid) and
// rejects invalid UTF-8, so this subclass wraps floats in MsgFloat and decodes str with a
// fatal TextDecoder. readF32, readF64 and decodeUtf8String are methods of Decoder in
// @msgpack/msgpack 3.x (pinned in package-lock.json); the vectors catch a change.
class StrictDecoder extends Decoder {
  readF32() {
    return new MsgFloat(super.readF32());
  }

  readF64() {
    return new MsgFloat(super.readF64());
  }

  decodeUtf8String(byteLength, headerOffset) {
    const start = this.pos + headerOffset;
    if (this.bytes.byteLength < start + byteLength) throw new RangeError("Insufficient data");
    const text = fatalUtf8.decode(this.bytes.subarray(start, start + byteLength));
    this.pos += headerOffset + byteLength;
    return text;
  }
}

const decoder = new StrictDecoder({
  useBigInt64: true, // uint 64 / int 64 -> BigInt: t_capture (~1.7e18 ns) exceeds 2^53
  mapKeyConverter: (key) => {
    if (typeof key !== "string") throw new RangeError("a map key is not a str");
    return key;
  },
});

const isMap = (x) =>
  x !== null && typeof x === "object" && Object.getPrototypeOf(x) === Object.prototype;
const isUint = (x) =>
  (typeof x === "number" && Number.isInteger(x) && x >= 0) || (typeof x === "bigint" && x >= 0n);
const get = (map, key) => (Object.hasOwn(map, key) ? map[key] : undefined);

/** Only msgpack's own types: no ext (the decoder turns those into ExtData or Date). */
function plain(x) {
  if (x === null || typeof x !== "object" || x instanceof MsgFloat || x instanceof Uint8Array) {
    return true;
  }
  if (Array.isArray(x)) return x.every(plain);
  return isMap(x) && Object.values(x).every(plain);
}

/** Exactly one msgpack object obeying the spec's rules, and a map; else throws `kind`. */
function decodeMap(bytes, kind) {
  let value;
  try {
    value = decoder.decode(bytes); // throws on trailing bytes too
  } catch (err) {
    throw new ProtocolError(kind, `invalid msgpack: ${err.message}`);
  }
  if (!plain(value) || !isMap(value)) throw new ProtocolError(kind, "not a msgpack map");
  return value;
}

function checkVersion(map, kind) {
  const v = get(map, "v");
  if (!Array.isArray(v) || v.length !== 2 || !v.every(isUint)) {
    throw new ProtocolError(kind, "missing or malformed protocol version 'v'");
  }
  if (BigInt(v[0]) !== 1n) {
    throw new ProtocolError("version", `protocol major version ${v[0]}; this client speaks 1`);
  }
  return [BigInt(v[0]), BigInt(v[1])];
}

function uint(map, key, kind) {
  const value = get(map, key);
  if (!isUint(value)) throw new ProtocolError(kind, `'${key}' must be a uint`);
  return BigInt(value);
}

function str(map, key, kind) {
  const value = get(map, key);
  if (typeof value !== "string") throw new ProtocolError(kind, `'${key}' must be a str`);
  return value;
}

const STREAM_ID = /^[A-Za-z0-9_.-][A-Za-z0-9_./-]*$/;

/**
 * Decode one frame message (a Uint8Array/Buffer holding one ZeroMQ frame).
 * Returns {header, payload}; header ints are BigInt. Throws ProtocolError.
 */
export function decodeFrame(buf) {
  const n = buf.length;
  const t = buf.subarray(0, MAX_STREAM_ID + 1).indexOf(0);
  if (t <= 0) throw new ProtocolError("no_terminator", "no topic terminator in the first 201 bytes");
  if (n < t + 6) throw new ProtocolError("truncated", "truncated before the header");
  if (buf[t + 1] !== 1) {
    throw new ProtocolError("version", `protocol major version ${buf[t + 1]}; this client speaks 1`);
  }
  const h = new DataView(buf.buffer, buf.byteOffset + t + 2, 4).getUint32(0, false);
  if (h > MAX_HEADER || t + 6 + h > n) throw new ProtocolError("truncated", `header length ${h}`);
  const m = decodeMap(buf.subarray(t + 6, t + 6 + h), "header");
  const v = checkVersion(m, "header");
  const K = "header";
  const header = {
    v,
    stream: str(m, "stream", K),
    session: uint(m, "session", K),
    seq: uint(m, "seq", K),
    t_capture: uint(m, "t_capture", K),
    t_publish: uint(m, "t_publish", K),
    encoding: str(m, "encoding", K),
    shape: get(m, "shape"),
    dtype: str(m, "dtype", K),
    pixfmt: str(m, "pixfmt", K),
    meta: isMap(get(m, "meta")) ? get(m, "meta") : {},
  };
  if (!ENCODINGS.includes(header.encoding)) throw new ProtocolError(K, "unknown encoding");
  if (!Object.hasOwn(SAMPLE_SIZE, header.dtype)) throw new ProtocolError(K, "unknown dtype");
  const shape = header.shape;
  if (
    !Array.isArray(shape) ||
    shape.length < 2 ||
    shape.length > 3 ||
    !shape.every((d) => isUint(d) && BigInt(d) >= 1n && BigInt(d) <= MAX_DIMENSION)
  ) {
    throw new ProtocolError(K, "invalid shape");
  }
  header.shape = shape.map(BigInt);
  if (header.stream.length > MAX_STREAM_ID || !STREAM_ID.test(header.stream)) {
    throw new ProtocolError(K, `invalid stream id ${JSON.stringify(header.stream)}`);
  }
  if (Buffer.compare(Buffer.from(header.stream, "utf8"), buf.subarray(0, t)) !== 0) {
    throw new ProtocolError("topic_mismatch", "topic does not match the header's stream");
  }
  return { header, payload: buf.subarray(t + 6 + h) };
}

/** The receiver's payload check: "ok", "size_mismatch" (raw) or "not_jpeg" (jpeg). */
export function payloadCheck(frame) {
  const { header, payload } = frame;
  if (header.encoding === "raw") {
    const size = header.shape.reduce((a, d) => a * d, SAMPLE_SIZE[header.dtype]);
    return BigInt(payload.length) === size ? "ok" : "size_mismatch";
  }
  return payload.length >= 2 && payload[0] === 0xff && payload[1] === 0xd8 ? "ok" : "not_jpeg";
}

/** Decode a result message; ints are BigInt. Throws ProtocolError ("invalid"/"version"). */
export function decodeResult(buf) {
  const K = "invalid";
  const m = decodeMap(buf, K);
  const v = checkVersion(m, K);
  const result = get(m, "result");
  if (!isMap(result)) throw new ProtocolError(K, "'result' must be a map");
  return {
    v,
    consumer: str(m, "consumer", K),
    stream: str(m, "stream", K),
    session: uint(m, "session", K),
    seq: uint(m, "seq", K),
    t_capture: uint(m, "t_capture", K),
    t_start: uint(m, "t_start", K),
    duration_ns: uint(m, "duration_ns", K),
    result,
  };
}

export function decodeRequest(buf) {
  const m = decodeMap(buf, "invalid");
  const v = checkVersion(m, "invalid");
  const op = get(m, "op");
  if (!OPS.includes(op)) throw new ProtocolError("invalid", `unknown control op ${op}`);
  return { op, v };
}

const GROUP = /^[A-Za-z0-9_.-]{1,64}$/;

/** Decode a work request (v1.2 ready/leave, v1.6 feed), checked as the broker checks it. */
export function decodeWorkRequest(buf) {
  const m = decodeMap(buf, "invalid");
  const v = checkVersion(m, "invalid");
  const op = get(m, "op");
  if (op === "leave") return { op, v };
  if (op !== "ready" && op !== "feed") throw new ProtocolError("invalid", `unknown work op ${op}`);
  if (op === "ready" && !(typeof get(m, "group") === "string" && GROUP.test(m.group))) {
    throw new ProtocolError("invalid", "bad or missing group");
  }
  const streams = get(m, "streams");
  if (!Array.isArray(streams) || streams.length < 1 || streams.length > 64 || streams.some((x) => typeof x !== "string")) {
    throw new ProtocolError("invalid", "'streams' must be an array of 1..64 strings");
  }
  if (!isUint(get(m, "credit")) || !isUint(get(m, "received"))) {
    throw new ProtocolError("invalid", "'credit' and 'received' must be uint");
  }
  const name = get(m, "name");
  if (name !== undefined && !(typeof name === "string" && Buffer.byteLength(name) <= 200)) {
    throw new ProtocolError("invalid", "bad name");
  }
  return { op, v };
}

/** Decode a control reply: the whole map (check `ok`). */
export function decodeReply(buf) {
  const m = decodeMap(buf, "invalid");
  if (typeof get(m, "ok") !== "boolean") throw new ProtocolError("invalid", "no boolean 'ok'");
  checkVersion(m, "invalid");
  if (m.ok === false && typeof get(m, "error") !== "string") {
    throw new ProtocolError("invalid", "error reply without an 'error' string");
  }
  return m;
}

const encodeOptions = { useBigInt64: true }; // BigInt -> uint 64 / int 64

export function encodeRequest(op) {
  return encode({ v: [1, 0], op }, encodeOptions);
}

/**
 * A work request (v1.2, "Work groups"): ready (join, ask, heartbeat) or leave; or a feed
 * request (v1.6, "Feeds": fan-out by credit, no group).
 */
export function encodeWorkRequest({ op = "ready", group, streams, credit = 1, received = 0, name }) {
  if (op === "leave") return encode({ v: [1, 2], op }, encodeOptions);
  const request =
    op === "feed"
      ? { v: [1, 6], op, streams, credit, received }
      : { v: [1, 2], op, group, streams, credit, received };
  if (name) request.name = name;
  return encode(request, encodeOptions);
}

/** On the work port: true for a reply map (an error), false for a frame message. */
export const isReply = (buf) =>
  buf.length > 0 && ((buf[0] >= 0x80 && buf[0] <= 0x8f) || buf[0] === 0xde || buf[0] === 0xdf);

/**
 * BigInts that fit a double exactly as numbers: the encoder writes a BigInt as a 9-byte
 * uint 64 / int 64 whatever its value, a number in the shortest integer form.
 */
function compact(x) {
  if (typeof x === "bigint") return x >= -(2n ** 53n) && x <= 2n ** 53n ? Number(x) : x;
  if (Array.isArray(x)) return x.map(compact);
  if (isMap(x)) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, compact(v)]));
  return x;
}

/** A result message; integer fields may be numbers or BigInt. */
export function encodeResult(r) {
  const message = {
    v: [1, 0],
    consumer: r.consumer,
    stream: r.stream,
    session: r.session,
    seq: r.seq,
    t_capture: r.t_capture,
    t_start: r.t_start,
    duration_ns: r.duration_ns,
    result: r.result,
  };
  return encode(compact(message), encodeOptions);
}

/** A plain JS value from a decoded one (floats unwrapped, for display and reports). */
export function toPlain(x) {
  if (x instanceof MsgFloat) return x.value;
  if (Array.isArray(x)) return x.map(toPlain);
  if (isMap(x)) return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, toPlain(v)]));
  return x;
}

// --- canonical JSON text (tests/vectors/README.md) ---------------------------------------

/**
 * printf("%.17g"), plus ".0" when the text has neither "." nor "e". Number#toExponential
 * rounds ties away from zero where C rounds them to even, so this rounds the double's exact
 * decimal value itself (BigInt arithmetic).
 */
export function formatFloat(x) {
  if (!Number.isFinite(x)) throw new RangeError("non-finite float");
  let text = Object.is(x, -0) ? "-0" : "0";
  if (x !== 0) {
    const [digits, exp] = seventeenDigits(Math.abs(x));
    if (exp < -4 || exp >= 17) {
      const mantissa = `${digits[0]}.${digits.slice(1)}`.replace(/\.?0+$/, "");
      text = `${mantissa}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
    } else {
      const whole = exp >= 0 ? digits.slice(0, exp + 1) : "0";
      const fraction = (exp >= 0 ? digits.slice(exp + 1) : "0".repeat(-exp - 1) + digits).replace(
        /0+$/,
        "",
      );
      text = fraction ? `${whole}.${fraction}` : whole;
    }
    if (x < 0) text = `-${text}`;
  }
  return /[.e]/.test(text) ? text : `${text}.0`;
}

/** 17 significant digits of a positive double, rounded half to even, and the exponent. */
function seventeenDigits(x) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  let mantissa = bits & ((1n << 52n) - 1n);
  let e = -1074; // subnormal
  if (biased !== 0) {
    mantissa |= 1n << 52n;
    e = biased - 1075;
  }
  // x = mantissa * 2^e exactly = exact / 10^places
  const places = e < 0 ? -e : 0;
  const exact = e < 0 ? mantissa * 5n ** BigInt(places) : mantissa << BigInt(e);
  const all = exact.toString();
  let exp = all.length - 1 - places;
  if (all.length <= 17) return [all.padEnd(17, "0"), exp];
  let kept = BigInt(all.slice(0, 17));
  const rest = all.slice(17);
  const above = rest[0] > "5" || (rest[0] === "5" && /[1-9]/.test(rest.slice(1)));
  const tie = rest[0] === "5" && !/[1-9]/.test(rest.slice(1));
  if (above || (tie && kept % 2n === 1n)) kept += 1n;
  let digits = kept.toString();
  if (digits.length > 17) {
    digits = digits.slice(0, 17);
    exp += 1;
  }
  return [digits, exp];
}

function canonicalStr(s) {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0);
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (code < 0x20) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

const utf8Order = (a, b) => Buffer.compare(Buffer.from(a[0], "utf8"), Buffer.from(b[0], "utf8"));

export function canonical(x) {
  if (x === null) return "null";
  if (x === true) return "true";
  if (x === false) return "false";
  if (typeof x === "bigint") return x.toString();
  if (typeof x === "number") {
    if (!Number.isInteger(x)) throw new TypeError("a non-integer number that is not a MsgFloat");
    return String(x);
  }
  if (x instanceof MsgFloat) return formatFloat(x.value);
  if (typeof x === "string") return canonicalStr(x);
  if (x instanceof Uint8Array) return `{"$bin":"${Buffer.from(x).toString("hex")}"}`;
  if (Array.isArray(x)) return `[${x.map(canonical).join(",")}]`;
  if (isMap(x)) {
    const entries = Object.entries(x).sort(utf8Order);
    return `{${entries.map(([k, v]) => `${canonicalStr(k)}:${canonical(v)}`).join(",")}}`;
  }
  throw new TypeError(`no canonical form for ${x}`);
}

/** The decoded view of tests/vectors/README.md. */
export function frameView(frame) {
  return {
    header: frame.header,
    payload: Buffer.from(frame.payload).toString("hex"),
    payload_check: payloadCheck(frame),
  };
}
