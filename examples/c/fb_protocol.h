/* framebroker protocol v1 in C: decoders, checks, result/request encoders, canonical JSON.
 *
 * Written from docs/protocol.md alone; tests/vectors/ checks it (fbclient vectors DIR).
 * Depends on msgpack-c (Debian: libmsgpack-dev, library libmsgpackc) and nothing else.
 *
 * Decoded values point into the msgpack_unpacked zone (strings) and into the message
 * buffer (the payload): keep both alive while you use them, then msgpack_unpacked_destroy().
 */
#ifndef FB_PROTOCOL_H
#define FB_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#define FB_MAX_STREAM_ID 200
#define FB_MAX_HEADER 65536u
#define FB_MAX_DIMENSION 1048575u

/* Why a message was rejected: the spec's error kinds. */
typedef enum {
    FB_OK = 0,
    FB_NO_TERMINATOR, /* frames */
    FB_TRUNCATED,
    FB_VERSION, /* every message type */
    FB_HEADER,
    FB_TOPIC_MISMATCH,
    FB_INVALID /* results and control messages */
} fb_kind;

const char *fb_kind_name(fb_kind kind);

/* A str in a message: not NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} fb_str;

bool fb_str_eq(fb_str s, const char *text);

typedef struct {
    uint64_t v_major, v_minor;
    fb_str stream;
    uint64_t session, seq, t_capture, t_publish;
    fb_str encoding, dtype, pixfmt;
    uint64_t shape[3];
    int ndim;
    msgpack_object meta; /* a map; an empty map when absent or not a map */
    const unsigned char *payload;
    size_t payload_len;
} fb_frame;

typedef struct {
    uint64_t v_major, v_minor;
    fb_str consumer, stream;
    uint64_t session, seq, t_capture, t_start, duration_ns;
    msgpack_object result; /* a map */
} fb_result;

/* Decode one ZeroMQ frame of the publish/ingest port. `up` must be initialized
 * (msgpack_unpacked_init) and receives the header's objects. */
fb_kind fb_decode_frame(const unsigned char *msg, size_t len, msgpack_unpacked *up, fb_frame *out);

/* The receiver's payload check: "ok", "size_mismatch" (raw) or "not_jpeg" (jpeg). */
const char *fb_payload_check(const fb_frame *frame);

fb_kind fb_decode_result(const unsigned char *msg, size_t len, msgpack_unpacked *up, fb_result *out);

/* A control request: on success *op is the op ("ping", "streams", "stats" or "groups"). */
fb_kind fb_decode_request(const unsigned char *msg, size_t len, msgpack_unpacked *up, fb_str *op,
                          uint64_t version[2]);

/* A work request (v1.2 ready/leave, v1.6 feed), checked as the broker checks it. */
fb_kind fb_decode_work_request(const unsigned char *msg, size_t len, msgpack_unpacked *up, fb_str *op,
                               uint64_t version[2]);

/* A control reply: on success up->data is the reply map and *ok its "ok". */
fb_kind fb_decode_reply(const unsigned char *msg, size_t len, msgpack_unpacked *up, bool *ok);

/* Look a key up in a map object (the last entry wins if a key repeats); NULL if absent. */
const msgpack_object *fb_map_get(const msgpack_object *map, const char *key);

/* Encoders (the result's "result" map is written by the caller's callback). */
void fb_pack_str(msgpack_packer *pk, const char *text, size_t len);
void fb_pack_cstr(msgpack_packer *pk, const char *text);
void fb_pack_request(msgpack_sbuffer *buf, const char *op);
/* Packs the result envelope; then call `write_result` to pack exactly one map. */
void fb_pack_result(msgpack_sbuffer *buf, const fb_result *r, void (*write_result)(msgpack_packer *, void *),
                    void *arg);

/* Canonical JSON text (tests/vectors/README.md), into a growable buffer. */
typedef struct {
    char *data;
    size_t len, cap;
} fb_buf;

void fb_buf_free(fb_buf *b);
void fb_buf_add(fb_buf *b, const char *text, size_t len);
void fb_buf_addf(fb_buf *b, const char *fmt, ...);
void fb_canonical(fb_buf *b, const msgpack_object *o);
void fb_canonical_str(fb_buf *b, const char *s, size_t len);
void fb_canonical_frame(fb_buf *b, const fb_frame *f);
void fb_canonical_result(fb_buf *b, const fb_result *r);

#endif
