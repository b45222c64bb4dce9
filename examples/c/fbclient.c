/* fbclient: a framebroker client in C (libzmq + msgpack-c), written from docs/protocol.md.
 *
 *   fbclient subscribe --stream ID [--broker HOST] [--name NAME] [--count N]
 *   fbclient work --group NAME --stream PATTERN [--broker HOST] [--name NAME] [--count N]
 *   fbclient streams [--broker HOST] [--json]
 *   fbclient vectors DIR
 *
 * subscribe: newest frames of one stream (a conflating SUB socket subscribed to "ID\0"),
 *   each header validated and its payload checked against shape/encoding; one result
 *   message per frame is PUSHed to the sink. Prints one JSON line per frame on stdout and
 *   a summary on stderr; exits 0 after N frames (default: run until Ctrl-C), 1 if no frame
 *   came for --timeout seconds (default 10). --broker HOST means the default ports on HOST;
 *   --publish, --results and --control give endpoints one by one.
 * work: a worker of a work group (protocol v1.2, the broker's work port): asks for one frame
 *   at a time (credit 1) with a `ready` request, repeated every second while nothing comes
 *   (the heartbeat), and handles each frame as `subscribe` does; `leave` at the end.
 * streams: the broker's `streams` control request; a table, or the reply as JSON.
 * vectors: decodes every DIR/NAME.bin and compares the outcome with DIR/NAME.json
 *   (tests/vectors/README.md); exits 0 when all pass.
 *
 * Build: make (or the gcc line in README.md).
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "fb_protocol.h"

static volatile sig_atomic_t stopping = 0;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: a blocking zmq call returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static uint64_t now_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int usage(void) {
    fprintf(stderr, "usage: fbclient subscribe --stream ID [--name NAME] [--count N] [--timeout SECONDS]\n"
                    "                          [--broker HOST | --publish EP --results EP]\n"
                    "       fbclient work --group NAME --stream PATTERN [--name NAME] [--count N] [--timeout SECONDS]\n"
                    "                     [--broker HOST | --work EP --results EP]\n"
                    "       fbclient streams [--broker HOST | --control EP] [--json] [--timeout SECONDS]\n"
                    "       fbclient vectors DIR\n"
                    "endpoints default to tcp://127.0.0.1:5556 (publish), :5557 (results), :5558 (control), :5560 (work)\n");
    return 2;
}

typedef struct {
    const char *stream, *publish, *results, *control, *work, *group, *name;
    long count;
    double timeout;
    int json;
    char hosts[4][300];
} options;

static int parse_options(int argc, char **argv, options *o) {
    o->stream = NULL;
    o->publish = "tcp://127.0.0.1:5556";
    o->results = "tcp://127.0.0.1:5557";
    o->control = "tcp://127.0.0.1:5558";
    o->work = "tcp://127.0.0.1:5560";
    o->group = NULL;
    o->name = "c-client";
    o->count = 0;
    o->timeout = 10.0;
    o->json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (!next) return -1;
        if (strcmp(a, "--broker") == 0) { /* every port on one host, default port numbers */
            snprintf(o->hosts[0], sizeof o->hosts[0], "tcp://%s:5556", next);
            snprintf(o->hosts[1], sizeof o->hosts[1], "tcp://%s:5557", next);
            snprintf(o->hosts[2], sizeof o->hosts[2], "tcp://%s:5558", next);
            snprintf(o->hosts[3], sizeof o->hosts[3], "tcp://%s:5560", next);
            o->publish = o->hosts[0];
            o->results = o->hosts[1];
            o->control = o->hosts[2];
            o->work = o->hosts[3];
        } else if (strcmp(a, "--stream") == 0)
            o->stream = next;
        else if (strcmp(a, "--publish") == 0)
            o->publish = next;
        else if (strcmp(a, "--results") == 0)
            o->results = next;
        else if (strcmp(a, "--control") == 0)
            o->control = next;
        else if (strcmp(a, "--work") == 0)
            o->work = next;
        else if (strcmp(a, "--group") == 0)
            o->group = next;
        else if (strcmp(a, "--name") == 0)
            o->name = next;
        else if (strcmp(a, "--count") == 0)
            o->count = strtol(next, NULL, 10);
        else if (strcmp(a, "--timeout") == 0)
            o->timeout = strtod(next, NULL);
        else
            return -1;
        i++;
    }
    return 0;
}

/* --- subscribe ----------------------------------------------------------------------- */

typedef struct {
    const fb_frame *frame;
    const char *check;
} result_info;

/* The processor's output: a few facts about the frame, as the "result" map. */
static void write_result(msgpack_packer *pk, void *arg) {
    const result_info *info = arg;
    msgpack_pack_map(pk, 4);
    fb_pack_cstr(pk, "client");
    fb_pack_cstr(pk, "c");
    fb_pack_cstr(pk, "payload_bytes");
    msgpack_pack_uint64(pk, info->frame->payload_len);
    fb_pack_cstr(pk, "payload_check");
    fb_pack_cstr(pk, info->check);
    fb_pack_cstr(pk, "shape");
    msgpack_pack_array(pk, (size_t)info->frame->ndim);
    for (int i = 0; i < info->frame->ndim; i++) msgpack_pack_uint64(pk, info->frame->shape[i]);
}

/* What a frame loop has seen so far, and where its results go. */
typedef struct {
    const options *o;
    void *push;
    long decoded, malformed, duplicates, bad_payload, sent, unsent;
    uint64_t last_session, last_seq;
    int have_last;
} frame_loop;

/* One frame message: decode and check it, drop a repeat, print it, PUSH its result. */
static void handle_frame(frame_loop *s, const unsigned char *data, size_t len) {
    const options *o = s->o;
    uint64_t t_start = now_ns(CLOCK_REALTIME), began = now_ns(CLOCK_MONOTONIC);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    fb_frame f;
    fb_kind kind = fb_decode_frame(data, len, &up, &f);
    if (kind != FB_OK) {
        s->malformed++;
        fprintf(stderr, "fbclient: dropped a malformed frame message (%s, %zu bytes)\n", fb_kind_name(kind), len);
    } else if (s->have_last && f.session == s->last_session && f.seq <= s->last_seq) {
        s->duplicates++; /* the broker's newest-frame re-send, seen twice */
    } else {
        s->have_last = 1;
        s->last_session = f.session;
        s->last_seq = f.seq;
        const char *check = fb_payload_check(&f);
        if (strcmp(check, "ok") != 0) {
            s->bad_payload++;
            fprintf(stderr, "fbclient: seq %llu: payload check failed (%s)\n", (unsigned long long)f.seq, check);
        } else {
            s->decoded++;
        }
        /* the result */
        fb_result r = {.consumer = {o->name, strlen(o->name)},
                       .stream = f.stream,
                       .session = f.session,
                       .seq = f.seq,
                       .t_capture = f.t_capture,
                       .t_start = t_start};
        r.duration_ns = now_ns(CLOCK_MONOTONIC) - began;
        result_info info = {&f, check};
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        fb_pack_result(&buf, &r, write_result, &info);
        /* never block on a dead sink: drop the result instead */
        if (zmq_send(s->push, buf.data, buf.size, ZMQ_DONTWAIT) == (int)buf.size)
            s->sent++;
        else
            s->unsent++;
        msgpack_sbuffer_destroy(&buf);
        printf("{\"stream\":\"%.*s\",\"session\":%llu,\"seq\":%llu,\"encoding\":\"%.*s\",\"shape\":[", (int)f.stream.len,
               f.stream.ptr, (unsigned long long)f.session, (unsigned long long)f.seq, (int)f.encoding.len,
               f.encoding.ptr);
        for (int i = 0; i < f.ndim; i++) printf(i ? ",%llu" : "%llu", (unsigned long long)f.shape[i]);
        printf("],\"payload_bytes\":%zu,\"payload_check\":\"%s\",\"age_ms\":%.3f}\n", f.payload_len, check,
               ((double)t_start - (double)f.t_capture) / 1e6);
        fflush(stdout);
    }
    msgpack_unpacked_destroy(&up);
}

static void print_summary(const frame_loop *s) {
    fprintf(stderr,
            "fbclient: %ld frames decoded, %ld malformed, %ld duplicates, %ld bad payloads; "
            "%ld results sent, %ld not sent\n",
            s->decoded, s->malformed, s->duplicates, s->bad_payload, s->sent, s->unsent);
}

static int subscribe(const options *o) {
    if (!o->stream) return usage();
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    int zero = 0, one = 1, linger = 2000, timeout_ms = (int)(o->timeout * 1000);
    /* options before connect: CONFLATE keeps only the newest whole frame */
    zmq_setsockopt(sub, ZMQ_CONFLATE, &one, sizeof one);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout_ms, sizeof timeout_ms);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, o->stream, strlen(o->stream) + 1); /* "ID\0": exactly ID */
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger); /* deliver the last results on exit */
    if (zmq_connect(sub, o->publish) != 0 || zmq_connect(push, o->results) != 0) {
        fprintf(stderr, "fbclient: cannot connect: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    frame_loop s = {.o = o, .push = push};
    int status = 0;
    while (!stopping && (o->count <= 0 || s.decoded < o->count)) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sub, 0) < 0) {
            int err = zmq_errno();
            zmq_msg_close(&msg);
            if (err == EINTR) break;
            if (err == EAGAIN) {
                fprintf(stderr, "fbclient: no frame of %s within %gs\n", o->stream, o->timeout);
                status = 1;
            } else {
                fprintf(stderr, "fbclient: receive failed: %s\n", zmq_strerror(err));
                status = 1;
            }
            break;
        }
        handle_frame(&s, zmq_msg_data(&msg), zmq_msg_size(&msg));
        zmq_msg_close(&msg);
    }
    print_summary(&s);
    zmq_close(sub);
    zmq_close(push);
    zmq_ctx_term(ctx);
    return status;
}

/* --- work (a worker of a work group, protocol v1.2) ---------------------------------------- */

/* A work request: {"v": [1, 2], "op": "ready", group, streams, credit, received, name} or
 * {"v": [1, 2], "op": "leave"}. */
static void pack_work_request(msgpack_sbuffer *buf, const options *o, int ready, uint64_t received) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, ready ? 7 : 2);
    fb_pack_cstr(&pk, "v");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 2);
    fb_pack_cstr(&pk, "op");
    fb_pack_cstr(&pk, ready ? "ready" : "leave");
    if (!ready) return;
    fb_pack_cstr(&pk, "group");
    fb_pack_cstr(&pk, o->group);
    fb_pack_cstr(&pk, "streams");
    msgpack_pack_array(&pk, 1);
    fb_pack_cstr(&pk, o->stream);
    fb_pack_cstr(&pk, "credit");
    msgpack_pack_uint64(&pk, 1);
    fb_pack_cstr(&pk, "received");
    msgpack_pack_uint64(&pk, received);
    fb_pack_cstr(&pk, "name");
    fb_pack_cstr(&pk, o->name);
}

static void send_work_request(void *dealer, const options *o, int ready, uint64_t received) {
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    pack_work_request(&buf, o, ready, received);
    zmq_send(dealer, buf.data, buf.size, ZMQ_DONTWAIT); /* not connected yet: the next heartbeat */
    msgpack_sbuffer_destroy(&buf);
}

/* A reply (the broker refused the request) starts with a msgpack map; a frame with a stream id. */
static int is_reply(const unsigned char *data, size_t len) {
    return len > 0 && ((data[0] >= 0x80 && data[0] <= 0x8f) || data[0] == 0xde || data[0] == 0xdf);
}

/* Ask for one frame (credit 1), handle it, ask again; repeat the request every second while
 * nothing comes (the heartbeat). The broker sends only what was asked for. */
static int work(const options *o) {
    if (!o->stream || !o->group) return usage();
    void *ctx = zmq_ctx_new();
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    int zero = 0, linger = 2000;
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(dealer, o->work) != 0 || zmq_connect(push, o->results) != 0) {
        fprintf(stderr, "fbclient: cannot connect: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    frame_loop s = {.o = o, .push = push};
    uint64_t received = 0;
    int status = 0, idle = 0; /* seconds without a frame */
    while (!stopping && (o->count <= 0 || s.decoded < o->count)) {
        send_work_request(dealer, o, 1, received);
        zmq_pollitem_t item = {dealer, 0, ZMQ_POLLIN, 0};
        int ready = zmq_poll(&item, 1, 1000);
        if (ready < 0) break; /* EINTR: a signal */
        if (ready == 0) {
            if (++idle >= o->timeout) {
                fprintf(stderr, "fbclient: no frame of %s within %gs\n", o->stream, o->timeout);
                status = 1;
                break;
            }
            continue; /* heartbeat: the same request again */
        }
        idle = 0;
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            continue;
        }
        const unsigned char *data = zmq_msg_data(&msg);
        size_t len = zmq_msg_size(&msg);
        if (is_reply(data, len)) {
            msgpack_unpacked up;
            msgpack_unpacked_init(&up);
            bool ok = false;
            const msgpack_object *e = NULL;
            if (fb_decode_reply(data, len, &up, &ok) == FB_OK) e = fb_map_get(&up.data, "error");
            if (e && e->type == MSGPACK_OBJECT_STR)
                fprintf(stderr, "fbclient: the broker refused this worker: %.*s\n", (int)e->via.str.size,
                        e->via.str.ptr);
            else
                fprintf(stderr, "fbclient: the broker refused this worker (an unreadable reply)\n");
            msgpack_unpacked_destroy(&up);
            zmq_msg_close(&msg);
            status = 1;
            break;
        }
        received++;
        handle_frame(&s, data, len);
        zmq_msg_close(&msg);
    }
    send_work_request(dealer, o, 0, received);
    int leave_ms = 500; /* give `leave` time to go out */
    zmq_setsockopt(dealer, ZMQ_LINGER, &leave_ms, sizeof leave_ms);
    print_summary(&s);
    zmq_close(dealer);
    zmq_close(push);
    zmq_ctx_term(ctx);
    return status;
}

/* --- streams (control) ------------------------------------------------------------------ */

static double get_float(const msgpack_object *map, const char *key) {
    const msgpack_object *o = fb_map_get(map, key);
    if (!o) return 0;
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) return o->via.f64;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (double)o->via.u64;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return (double)o->via.i64;
    return 0;
}

static const char *get_text(const msgpack_object *map, const char *key, int *len) {
    const msgpack_object *o = fb_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR) {
        *len = 1;
        return "?";
    }
    *len = (int)o->via.str.size;
    return o->via.str.ptr;
}

static int streams(const options *o) {
    void *ctx = zmq_ctx_new();
    void *req = zmq_socket(ctx, ZMQ_REQ);
    int zero = 0, status = 1;
    zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(req, o->control) != 0) {
        fprintf(stderr, "fbclient: cannot connect to %s: %s\n", o->control, zmq_strerror(zmq_errno()));
        return 1;
    }
    msgpack_sbuffer request;
    msgpack_sbuffer_init(&request);
    fb_pack_request(&request, "streams");
    zmq_send(req, request.data, request.size, 0);
    msgpack_sbuffer_destroy(&request);
    zmq_pollitem_t item = {req, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, (long)(o->timeout * 1000)) <= 0) {
        fprintf(stderr, "fbclient: no reply from %s within %gs (is the broker running?)\n", o->control, o->timeout);
        goto done;
    }
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    zmq_msg_recv(&msg, req, 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    bool ok = false;
    fb_kind kind = fb_decode_reply(zmq_msg_data(&msg), zmq_msg_size(&msg), &up, &ok);
    const msgpack_object *list = kind == FB_OK ? fb_map_get(&up.data, "streams") : NULL;
    if (kind != FB_OK) {
        fprintf(stderr, "fbclient: malformed reply (%s)\n", fb_kind_name(kind));
    } else if (!ok) {
        const msgpack_object *e = fb_map_get(&up.data, "error");
        fprintf(stderr, "fbclient: broker error: %.*s\n", (int)e->via.str.size, e->via.str.ptr);
    } else if (!list || list->type != MSGPACK_OBJECT_ARRAY) {
        fprintf(stderr, "fbclient: reply has no streams array\n");
    } else if (o->json) {
        fb_buf b = {0};
        fb_canonical(&b, &up.data);
        printf("%s\n", b.data);
        fb_buf_free(&b);
        status = 0;
    } else {
        printf("%-24s %-6s %-5s %-14s %10s %8s %8s\n", "STREAM", "STATE", "ENC", "SHAPE", "SEQ", "FPS", "AGE_S");
        for (uint32_t i = 0; i < list->via.array.size; i++) {
            const msgpack_object *s = &list->via.array.ptr[i];
            if (s->type != MSGPACK_OBJECT_MAP) continue;
            int nl, sl, el;
            const char *name = get_text(s, "stream", &nl), *state = get_text(s, "state", &sl),
                       *enc = get_text(s, "encoding", &el);
            char shape[64] = "";
            const msgpack_object *sh = fb_map_get(s, "shape");
            for (uint32_t k = 0; sh && sh->type == MSGPACK_OBJECT_ARRAY && k < sh->via.array.size && k < 3; k++)
                snprintf(shape + strlen(shape), sizeof shape - strlen(shape), k ? "x%llu" : "%llu",
                         (unsigned long long)sh->via.array.ptr[k].via.u64);
            printf("%-24.*s %-6.*s %-5.*s %-14s %10.0f %8.1f %8.2f\n", nl, name, sl, state, el, enc, shape,
                   get_float(s, "seq"), get_float(s, "fps"), get_float(s, "age_s"));
        }
        status = 0;
    }
    msgpack_unpacked_destroy(&up);
    zmq_msg_close(&msg);
done:
    zmq_close(req);
    zmq_ctx_term(ctx);
    return status;
}

/* --- vectors ------------------------------------------------------------------------------ */

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    size_t cap = 4096, n = 0;
    unsigned char *data = malloc(cap);
    size_t got;
    while (data && (got = fread(data + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap) data = realloc(data, cap *= 2);
    }
    fclose(fp);
    *len = n;
    return data;
}

/* The outcome of one vector as canonical JSON text. */
static void outcome(const char *name, const unsigned char *data, size_t len, fb_buf *out) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    fb_kind kind = FB_INVALID;
    fb_buf_add(out, "{\"decoded\":", 11);
    size_t mark = out->len;
    if (strncmp(name, "frame-", 6) == 0) {
        fb_frame f;
        if ((kind = fb_decode_frame(data, len, &up, &f)) == FB_OK) fb_canonical_frame(out, &f);
    } else if (strncmp(name, "result-", 7) == 0) {
        fb_result r;
        if ((kind = fb_decode_result(data, len, &up, &r)) == FB_OK) fb_canonical_result(out, &r);
    } else if (strncmp(name, "request-", 8) == 0) {
        fb_str op;
        uint64_t v[2];
        if ((kind = fb_decode_request(data, len, &up, &op, v)) == FB_OK) {
            fb_buf_add(out, "{\"op\":", 6);
            fb_canonical_str(out, op.ptr, op.len);
            fb_buf_addf(out, ",\"v\":[%llu,%llu]}", (unsigned long long)v[0], (unsigned long long)v[1]);
        }
    } else if (strncmp(name, "work-", 5) == 0) {
        fb_str op;
        uint64_t v[2];
        if ((kind = fb_decode_work_request(data, len, &up, &op, v)) == FB_OK) {
            fb_buf_add(out, "{\"op\":", 6);
            fb_canonical_str(out, op.ptr, op.len);
            fb_buf_addf(out, ",\"v\":[%llu,%llu]}", (unsigned long long)v[0], (unsigned long long)v[1]);
        }
    } else if (strncmp(name, "reply-", 6) == 0) {
        bool ok;
        if ((kind = fb_decode_reply(data, len, &up, &ok)) == FB_OK) fb_canonical(out, &up.data);
    }
    if (kind == FB_OK) {
        fb_buf_add(out, "}", 1);
    } else {
        out->len = mark - 11;
        fb_buf_addf(out, "{\"error\":\"%s\"}", fb_kind_name(kind));
    }
    msgpack_unpacked_destroy(&up);
}

/* A "parts-" vector is a whole ZeroMQ message: each part as a uint32 big-endian length and
 * its bytes. Every message of the protocol is one frame, so a message of several parts is
 * rejected ("multipart") whatever its parts hold; one part decodes as the rest of the name
 * says. Returns -1 when the lengths do not add up. */
static int parts_outcome(const char *name, const unsigned char *data, size_t len, fb_buf *out) {
    size_t at = 0, count = 0, first_at = 0, first_len = 0;
    while (at < len) {
        if (len - at < 4) return -1;
        size_t size = (size_t)data[at] << 24 | (size_t)data[at + 1] << 16 | (size_t)data[at + 2] << 8 | data[at + 3];
        if (size > len - at - 4) return -1;
        if (count++ == 0) {
            first_at = at + 4;
            first_len = size;
        }
        at += 4 + size;
    }
    if (count == 1)
        outcome(name + 6, data + first_at, first_len, out);
    else
        fb_buf_addf(out, "{\"error\":\"multipart\"}");
    return 0;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int vectors(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "fbclient: cannot open %s\n", dir);
        return 2;
    }
    char **names = NULL;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".bin") == 0) {
            names = realloc(names, (count + 1) * sizeof *names);
            names[count++] = strndup(e->d_name, n - 4);
        }
    }
    closedir(d);
    qsort(names, count, sizeof *names, compare_names);
    size_t passed = 0, failed = 0;
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        size_t len, want_len;
        snprintf(path, sizeof path, "%s/%s.bin", dir, names[i]);
        unsigned char *data = read_file(path, &len);
        snprintf(path, sizeof path, "%s/%s.json", dir, names[i]);
        char *want = (char *)read_file(path, &want_len);
        if (!data || !want) {
            fprintf(stderr, "FAIL %s: cannot read its files\n", names[i]);
            failed++;
        } else {
            while (want_len && (want[want_len - 1] == '\n' || want[want_len - 1] == '\r')) want_len--;
            fb_buf got = {0};
            if (strncmp(names[i], "parts-", 6) != 0)
                outcome(names[i], data, len, &got);
            else if (parts_outcome(names[i], data, len, &got) != 0)
                fb_buf_addf(&got, "{\"error\":\"bad parts file\"}");
            if (got.len == want_len && memcmp(got.data, want, want_len) == 0) {
                passed++;
            } else {
                failed++;
                printf("FAIL %s\n  got:  %s\n  want: %.*s\n", names[i], got.data, (int)want_len, want);
            }
            fb_buf_free(&got);
        }
        free(data);
        free(want);
        free(names[i]);
    }
    free(names);
    printf("vectors: %zu passed, %zu failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "vectors") == 0) return argc == 3 ? vectors(argv[2]) : usage();
    options o;
    if (parse_options(argc, argv, &o) != 0) return usage();
    install_signals();
    if (strcmp(argv[1], "subscribe") == 0) return subscribe(&o);
    if (strcmp(argv[1], "work") == 0) return work(&o);
    if (strcmp(argv[1], "streams") == 0) return streams(&o);
    return usage();
}
