// brokerset.mjs: subscribing to a broker set (protocol v1.3, "Broker sets" in docs/protocol.md).
//
// A subscriber of a set connects ONE SUB socket to the publish port of every broker; libzmq
// fair-queues what arrives, and the reader's (session, seq) rule already refuses a frame that
// is not newer, so a stream that moves between brokers needs nothing more. This module does
// not resolve DNS names nor re-resolve them (the reference client does, every 5 s): give it
// the brokers' addresses.

// "a,b,,a" -> ["a", "b"]: the items of a comma-separated list, trimmed, duplicates once.
export function splitList(text) {
  const out = [];
  for (const part of String(text).split(",")) {
    const item = part.trim();
    if (item && !out.includes(item)) out.push(item);
  }
  if (out.length === 0) throw new Error(`empty list: ${JSON.stringify(text)}`);
  return out;
}

// ["b1", "fd00::7"], 5556 -> ["tcp://b1:5556", "tcp://[fd00::7]:5556"]: one port on every host.
export function brokerEndpoints(hosts, port) {
  return hosts.map((h) => (h.includes(":") ? `tcp://[${h}]:${port}` : `tcp://${h}:${port}`));
}

// Connect `socket` to every endpoint of `endpoints` (a list, or "EP1,EP2"); returns the list.
export function connectAll(socket, endpoints) {
  const list = Array.isArray(endpoints) ? endpoints : splitList(endpoints);
  for (const endpoint of list) socket.connect(endpoint);
  return list;
}
