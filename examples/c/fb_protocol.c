/* framebroker protocol v1 in C; see fb_protocol.h and docs/protocol.md. */
#define _POSIX_C_SOURCE 200809L

#include "fb_protocol.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const KIND_NAMES[] = {"ok", "no_terminator", "truncated", "version", "header", "topic_mismatch",
                                         "invalid"};

const char *fb_kind_name(fb_kind kind) { return KIND_NAMES[kind]; }

bool fb_str_eq(fb_str s, const char *text) { return s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0; }

/* --- msgpack rules: one object, valid UTF-8, str keys, no ext ------------------------ */

/* RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i], cp;
        size_t len;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len) return false;
        for (size_t k = 1; k < len; k++) {
            unsigned d = s[i + k];
            if ((d & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static bool tree_valid(const msgpack_object *o, int depth) {
    if (depth > 100) return false;
    switch (o->type) {
    case MSGPACK_OBJECT_STR:
        return utf8_valid((const unsigned char *)o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_EXT: /* the spec lets receivers reject ext types */
        return false;
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!tree_valid(&o->via.array.ptr[i], depth + 1)) return false;
        return true;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (kv->key.type != MSGPACK_OBJECT_STR || !tree_valid(&kv->key, depth + 1) ||
                !tree_valid(&kv->val, depth + 1))
                return false;
        }
        return true;
    default:
        return true;
    }
}

/* Exactly one msgpack object filling buf[0:len], obeying the rules, and a map. */
static bool unpack_map(const unsigned char *buf, size_t len, msgpack_unpacked *up) {
    size_t off = 0;
    if (msgpack_unpack_next(up, (const char *)buf, len, &off) != MSGPACK_UNPACK_SUCCESS) return false;
    return off == len && tree_valid(&up->data, 0) && up->data.type == MSGPACK_OBJECT_MAP;
}

const msgpack_object *fb_map_get(const msgpack_object *map, const char *key) {
    const msgpack_object *found = NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen && memcmp(k->via.str.ptr, key, klen) == 0)
            found = &map->via.map.ptr[i].val;
    }
    return found;
}

/* msgpack-c reports every integer >= 0 as POSITIVE_INTEGER, whatever its encoding. */
static bool get_uint(const msgpack_object *map, const char *key, uint64_t *out) {
    const msgpack_object *o = fb_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return false;
    *out = o->via.u64;
    return true;
}

static bool get_str(const msgpack_object *map, const char *key, fb_str *out) {
    const msgpack_object *o = fb_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR) return false;
    out->ptr = o->via.str.ptr;
    out->len = o->via.str.size;
    return true;
}

/* `v`: FB_INVALID if missing or malformed, FB_VERSION if the major is not 1. */
static fb_kind check_version(const msgpack_object *map, uint64_t *major, uint64_t *minor) {
    const msgpack_object *v = fb_map_get(map, "v");
    if (!v || v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size != 2 ||
        v->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        v->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return FB_INVALID;
    *major = v->via.array.ptr[0].via.u64;
    *minor = v->via.array.ptr[1].via.u64;
    return *major == 1 ? FB_OK : FB_VERSION;
}

/* --- frames ---------------------------------------------------------------------------- */

static bool stream_id_valid(fb_str s) {
    if (s.len < 1 || s.len > FB_MAX_STREAM_ID) return false;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-' || (c == '/' && i > 0);
        if (!ok) return false;
    }
    return true;
}

static msgpack_object empty_map(void) {
    msgpack_object o;
    o.type = MSGPACK_OBJECT_MAP;
    o.via.map.size = 0;
    o.via.map.ptr = NULL;
    return o;
}

fb_kind fb_decode_frame(const unsigned char *m, size_t n, msgpack_unpacked *up, fb_frame *f) {
    memset(f, 0, sizeof *f);
    /* 1: the topic terminator within the first 201 bytes, not at offset 0 */
    const unsigned char *end = memchr(m, 0, n < FB_MAX_STREAM_ID + 1 ? n : FB_MAX_STREAM_ID + 1);
    if (end == NULL || end == m) return FB_NO_TERMINATOR;
    size_t t = (size_t)(end - m);
    /* 2-4: preamble */
    if (n < t + 6) return FB_TRUNCATED;
    if (m[t + 1] != 1) return FB_VERSION;
    uint32_t h = (uint32_t)m[t + 2] << 24 | (uint32_t)m[t + 3] << 16 | (uint32_t)m[t + 4] << 8 | m[t + 5];
    if (h > FB_MAX_HEADER || n - (t + 6) < h) return FB_TRUNCATED;
    /* 5: one msgpack map */
    if (!unpack_map(m + t + 6, h, up)) return FB_HEADER;
    const msgpack_object *hdr = &up->data;
    /* 6-7: version */
    fb_kind kind = check_version(hdr, &f->v_major, &f->v_minor);
    if (kind != FB_OK) return kind == FB_INVALID ? FB_HEADER : kind;
    /* 8: required keys and their types */
    if (!get_str(hdr, "stream", &f->stream) || !get_uint(hdr, "session", &f->session) ||
        !get_uint(hdr, "seq", &f->seq) || !get_uint(hdr, "t_capture", &f->t_capture) ||
        !get_uint(hdr, "t_publish", &f->t_publish) || !get_str(hdr, "encoding", &f->encoding) ||
        !get_str(hdr, "dtype", &f->dtype) || !get_str(hdr, "pixfmt", &f->pixfmt))
        return FB_HEADER;
    if (!fb_str_eq(f->encoding, "jpeg") && !fb_str_eq(f->encoding, "raw")) return FB_HEADER;
    if (!fb_str_eq(f->dtype, "uint8") && !fb_str_eq(f->dtype, "uint16") && !fb_str_eq(f->dtype, "float32"))
        return FB_HEADER;
    const msgpack_object *shape = fb_map_get(hdr, "shape");
    if (!shape || shape->type != MSGPACK_OBJECT_ARRAY || shape->via.array.size < 2 || shape->via.array.size > 3)
        return FB_HEADER;
    f->ndim = (int)shape->via.array.size;
    for (int i = 0; i < f->ndim; i++) {
        const msgpack_object *d = &shape->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 < 1 || d->via.u64 > FB_MAX_DIMENSION)
            return FB_HEADER;
        f->shape[i] = d->via.u64;
    }
    if (!stream_id_valid(f->stream)) return FB_HEADER;
    const msgpack_object *meta = fb_map_get(hdr, "meta");
    f->meta = (meta && meta->type == MSGPACK_OBJECT_MAP) ? *meta : empty_map();
    /* 9: topic == stream */
    if (f->stream.len != t || memcmp(m, f->stream.ptr, t) != 0) return FB_TOPIC_MISMATCH;
    f->payload = m + t + 6 + h;
    f->payload_len = n - (t + 6 + h);
    return FB_OK;
}

const char *fb_payload_check(const fb_frame *f) {
    if (fb_str_eq(f->encoding, "raw")) {
        uint64_t size = fb_str_eq(f->dtype, "uint8") ? 1 : fb_str_eq(f->dtype, "uint16") ? 2 : 4;
        for (int i = 0; i < f->ndim; i++) size *= f->shape[i]; /* < 2^62: dims are < 2^20 */
        return f->payload_len == size ? "ok" : "size_mismatch";
    }
    return f->payload_len >= 2 && f->payload[0] == 0xFF && f->payload[1] == 0xD8 ? "ok" : "not_jpeg";
}

/* --- results and control ------------------------------------------------------------- */

fb_kind fb_decode_result(const unsigned char *m, size_t n, msgpack_unpacked *up, fb_result *r) {
    memset(r, 0, sizeof *r);
    if (!unpack_map(m, n, up)) return FB_INVALID;
    const msgpack_object *map = &up->data;
    fb_kind kind = check_version(map, &r->v_major, &r->v_minor);
    if (kind != FB_OK) return kind;
    const msgpack_object *result = fb_map_get(map, "result");
    if (!result || result->type != MSGPACK_OBJECT_MAP) return FB_INVALID;
    r->result = *result;
    if (!get_str(map, "consumer", &r->consumer) || !get_str(map, "stream", &r->stream) ||
        !get_uint(map, "session", &r->session) || !get_uint(map, "seq", &r->seq) ||
        !get_uint(map, "t_capture", &r->t_capture) || !get_uint(map, "t_start", &r->t_start) ||
        !get_uint(map, "duration_ns", &r->duration_ns))
        return FB_INVALID;
    return FB_OK;
}

fb_kind fb_decode_request(const unsigned char *m, size_t n, msgpack_unpacked *up, fb_str *op, uint64_t version[2]) {
    if (!unpack_map(m, n, up)) return FB_INVALID;
    fb_kind kind = check_version(&up->data, &version[0], &version[1]);
    if (kind != FB_OK) return kind;
    if (!get_str(&up->data, "op", op)) return FB_INVALID;
    if (!fb_str_eq(*op, "ping") && !fb_str_eq(*op, "streams") && !fb_str_eq(*op, "stats") &&
        !fb_str_eq(*op, "groups")) return FB_INVALID;
    return FB_OK;
}

/* A work request (v1.2 "ready"/"leave", v1.6 "feed"): the map's fields are checked as the
 * broker checks them; *op and version[] say what it is. */
fb_kind fb_decode_work_request(const unsigned char *m, size_t n, msgpack_unpacked *up, fb_str *op,
                               uint64_t version[2]) {
    if (!unpack_map(m, n, up)) return FB_INVALID;
    fb_kind kind = check_version(&up->data, &version[0], &version[1]);
    if (kind != FB_OK) return kind;
    if (!get_str(&up->data, "op", op)) return FB_INVALID;
    if (fb_str_eq(*op, "leave")) return FB_OK;
    if (!fb_str_eq(*op, "ready") && !fb_str_eq(*op, "feed")) return FB_INVALID;
    fb_str group, name;
    if (fb_str_eq(*op, "ready")) {
        if (!get_str(&up->data, "group", &group) || group.len < 1 || group.len > 64) return FB_INVALID;
        for (size_t i = 0; i < group.len; i++) {
            char c = group.ptr[i];
            bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-';
            if (!ok) return FB_INVALID;
        }
    }
    const msgpack_object *streams = fb_map_get(&up->data, "streams");
    if (!streams || streams->type != MSGPACK_OBJECT_ARRAY || streams->via.array.size < 1 ||
        streams->via.array.size > 64)
        return FB_INVALID;
    for (uint32_t i = 0; i < streams->via.array.size; i++)
        if (streams->via.array.ptr[i].type != MSGPACK_OBJECT_STR) return FB_INVALID;
    uint64_t credit, received;
    if (!get_uint(&up->data, "credit", &credit) || !get_uint(&up->data, "received", &received))
        return FB_INVALID;
    if (fb_map_get(&up->data, "name") && (!get_str(&up->data, "name", &name) || name.len > 200))
        return FB_INVALID;
    return FB_OK;
}

fb_kind fb_decode_reply(const unsigned char *m, size_t n, msgpack_unpacked *up, bool *ok) {
    if (!unpack_map(m, n, up)) return FB_INVALID;
    const msgpack_object *o = fb_map_get(&up->data, "ok");
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN) return FB_INVALID;
    *ok = o->via.boolean;
    uint64_t major, minor;
    fb_kind kind = check_version(&up->data, &major, &minor);
    if (kind != FB_OK) return kind;
    fb_str error;
    if (!*ok && !get_str(&up->data, "error", &error)) return FB_INVALID;
    return FB_OK;
}

/* --- encoders ---------------------------------------------------------------------------- */

void fb_pack_str(msgpack_packer *pk, const char *text, size_t len) {
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, text, len);
}

void fb_pack_cstr(msgpack_packer *pk, const char *text) { fb_pack_str(pk, text, strlen(text)); }

static void pack_version(msgpack_packer *pk) {
    fb_pack_cstr(pk, "v");
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_uint64(pk, 0);
}

void fb_pack_request(msgpack_sbuffer *buf, const char *op) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    pack_version(&pk);
    fb_pack_cstr(&pk, "op");
    fb_pack_cstr(&pk, op);
}

void fb_pack_result(msgpack_sbuffer *buf, const fb_result *r, void (*write_result)(msgpack_packer *, void *),
                    void *arg) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
    pack_version(&pk);
    fb_pack_cstr(&pk, "consumer");
    fb_pack_str(&pk, r->consumer.ptr, r->consumer.len);
    fb_pack_cstr(&pk, "stream");
    fb_pack_str(&pk, r->stream.ptr, r->stream.len);
    const char *names[] = {"session", "seq", "t_capture", "t_start", "duration_ns"};
    const uint64_t values[] = {r->session, r->seq, r->t_capture, r->t_start, r->duration_ns};
    for (int i = 0; i < 5; i++) {
        fb_pack_cstr(&pk, names[i]);
        msgpack_pack_uint64(&pk, values[i]);
    }
    fb_pack_cstr(&pk, "result");
    write_result(&pk, arg);
}

/* --- canonical JSON text --------------------------------------------------------------- */

void fb_buf_free(fb_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void fb_buf_add(fb_buf *b, const char *text, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1) cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data) abort();
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, text, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void fb_buf_addf(fb_buf *b, const char *fmt, ...) {
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) abort();
    if ((size_t)n < sizeof small) {
        fb_buf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    fb_buf_add(b, big, (size_t)n);
    free(big);
}

void fb_canonical_str(fb_buf *b, const char *s, size_t len) {
    fb_buf_add(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c < 0x20) {
            fb_buf_add(b, s + start, i - start);
            if (c < 0x20)
                fb_buf_addf(b, "\\u%04x", c);
            else
                fb_buf_addf(b, "\\%c", c);
            start = i + 1;
        }
    }
    fb_buf_add(b, s + start, len - start);
    fb_buf_add(b, "\"", 1);
}

static void canonical_float(fb_buf *b, double x) {
    char text[64];
    snprintf(text, sizeof text, "%.17g", x);
    fb_buf_add(b, text, strlen(text));
    if (!strchr(text, '.') && !strchr(text, 'e')) fb_buf_add(b, ".0", 2);
}

static void canonical_hex(fb_buf *b, const unsigned char *p, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        char pair[2] = {digits[p[i] >> 4], digits[p[i] & 15]};
        fb_buf_add(b, pair, 2);
    }
}

static int key_order(const void *a, const void *b) {
    const msgpack_object_str *x = &((const msgpack_object_kv *)a)->key.via.str;
    const msgpack_object_str *y = &((const msgpack_object_kv *)b)->key.via.str;
    int c = memcmp(x->ptr, y->ptr, x->size < y->size ? x->size : y->size);
    return c ? c : (x->size > y->size) - (x->size < y->size);
}

void fb_canonical(fb_buf *b, const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        fb_buf_add(b, "null", 4);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        o->via.boolean ? fb_buf_add(b, "true", 4) : fb_buf_add(b, "false", 5);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fb_buf_addf(b, "%llu", (unsigned long long)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        fb_buf_addf(b, "%lld", (long long)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        canonical_float(b, o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        fb_canonical_str(b, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN:
        fb_buf_add(b, "{\"$bin\":\"", 9);
        canonical_hex(b, (const unsigned char *)o->via.bin.ptr, o->via.bin.size);
        fb_buf_add(b, "\"}", 2);
        break;
    case MSGPACK_OBJECT_ARRAY:
        fb_buf_add(b, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) fb_buf_add(b, ",", 1);
            fb_canonical(b, &o->via.array.ptr[i]);
        }
        fb_buf_add(b, "]", 1);
        break;
    case MSGPACK_OBJECT_MAP: {
        /* keys are str (checked when decoding); sort a copy of the entries by key bytes */
        uint32_t n = o->via.map.size;
        msgpack_object_kv *kv = malloc(n ? n * sizeof *kv : 1);
        if (!kv) abort();
        if (n) memcpy(kv, o->via.map.ptr, n * sizeof *kv);
        qsort(kv, n, sizeof *kv, key_order);
        fb_buf_add(b, "{", 1);
        for (uint32_t i = 0; i < n; i++) {
            if (i) fb_buf_add(b, ",", 1);
            fb_canonical(b, &kv[i].key);
            fb_buf_add(b, ":", 1);
            fb_canonical(b, &kv[i].val);
        }
        fb_buf_add(b, "}", 1);
        free(kv);
        break;
    }
    default: /* ext: rejected by the decoders */
        fb_buf_add(b, "\"<ext>\"", 7);
    }
}

/* The frame view of tests/vectors/README.md, keys in sorted order. */
void fb_canonical_frame(fb_buf *b, const fb_frame *f) {
    fb_buf_add(b, "{\"header\":{\"dtype\":", 19);
    fb_canonical_str(b, f->dtype.ptr, f->dtype.len);
    fb_buf_add(b, ",\"encoding\":", 12);
    fb_canonical_str(b, f->encoding.ptr, f->encoding.len);
    fb_buf_add(b, ",\"meta\":", 8);
    fb_canonical(b, &f->meta);
    fb_buf_add(b, ",\"pixfmt\":", 10);
    fb_canonical_str(b, f->pixfmt.ptr, f->pixfmt.len);
    fb_buf_addf(b, ",\"seq\":%llu,\"session\":%llu,\"shape\":[", (unsigned long long)f->seq,
                (unsigned long long)f->session);
    for (int i = 0; i < f->ndim; i++) fb_buf_addf(b, i ? ",%llu" : "%llu", (unsigned long long)f->shape[i]);
    fb_buf_add(b, "],\"stream\":", 11);
    fb_canonical_str(b, f->stream.ptr, f->stream.len);
    fb_buf_addf(b, ",\"t_capture\":%llu,\"t_publish\":%llu,\"v\":[%llu,%llu]},\"payload\":\"",
                (unsigned long long)f->t_capture, (unsigned long long)f->t_publish, (unsigned long long)f->v_major,
                (unsigned long long)f->v_minor);
    canonical_hex(b, f->payload, f->payload_len);
    fb_buf_addf(b, "\",\"payload_check\":\"%s\"}", fb_payload_check(f));
}

void fb_canonical_result(fb_buf *b, const fb_result *r) {
    fb_buf_add(b, "{\"consumer\":", 12);
    fb_canonical_str(b, r->consumer.ptr, r->consumer.len);
    fb_buf_addf(b, ",\"duration_ns\":%llu,\"result\":", (unsigned long long)r->duration_ns);
    fb_canonical(b, &r->result);
    fb_buf_addf(b, ",\"seq\":%llu,\"session\":%llu,\"stream\":", (unsigned long long)r->seq,
                (unsigned long long)r->session);
    fb_canonical_str(b, r->stream.ptr, r->stream.len);
    fb_buf_addf(b, ",\"t_capture\":%llu,\"t_start\":%llu,\"v\":[%llu,%llu]}", (unsigned long long)r->t_capture,
                (unsigned long long)r->t_start, (unsigned long long)r->v_major, (unsigned long long)r->v_minor);
}
