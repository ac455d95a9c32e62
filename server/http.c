/*
 * http.c — libmicrohttpd glue. The access handler follows MHD's three-call protocol: the
 * first call allocates the request context and runs every check that needs no body
 * (framing, drain, auth, route 404/405, Content-Type 415, Content-Length 413) so a refused
 * body is never read; middle calls append the body under max_body_bytes; the last call
 * suspends the connection and hands the request to the work pool, whose thread runs the
 * route's api handler and resumes the connection; MHD then calls once more and the answer
 * is queued. So the socket threads move bytes, and one of them is always free to accept
 * connections and answer /healthz, /readyz and /metrics (answered inline) while every
 * core computes; only small requests may run inline, on at most `threads` of them. Each
 * connection's deadlines live in conns.c. The request context is freed only in the completion
 * callback, which MHD also calls for aborted requests, so nothing leaks when a client
 * goes away; a suspended request is always resumed by its worker first.
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "budget.h"
#include "clock.h"
#include "conns.h"
#include "gate.h"
#include "jsontensor.h"
#include "listenaddr.h"
#include "log.h"
#include "metrics.h"
#include "prescan.h"
#include "router.h"
#include "tlsfiles.h"
#include "workpool.h"

#define CONNECTION_MEMORY (128 * 1024) /* MHD's per-connection read/header buffer */
/* A request with a body this small may run its handler on its socket thread when one of
 * the `threads` inline slots is free: the hop to the pool and back costs more than such a
 * request's work (the notebook pair at 2 connections lost a third of its rate). One socket
 * thread more than slots is always left to accept connections and answer health probes. */
#define INLINE_MAX_BODY (16 * 1024)
/* What parsing a JSON body costs beyond the body, per byte of its text (the tensors'
 * base64 taken out by the prescan is not text), charged to the memory budget before the
 * handler runs: a cJSON tree of nested numbers measured ~38 bytes a byte, and bodies up to
 * JSONTENSOR_MIN may be all tree; beyond that the large nested tensors are read straight
 * into their buffers (jsontensor.h), a few bytes a byte. */
#define JSON_TREE_FACTOR   40
#define JSON_TENSOR_FACTOR 4
/* After a request that held this much, the heap is trimmed once the daemon has been idle
 * for TRIM_IDLE_S, so RSS falls after a burst (main.c keeps freed blocks for the next
 * request meanwhile: trimming after each one would fault their pages in again). */
#define TRIM_AFTER_BYTES ((uint64_t)8 << 20)
#define TRIM_IDLE_S      1.0

struct http_server {
    struct MHD_Daemon *d;
    conns *conns;             /* every open connection and its deadlines */
    workpool *pool;           /* runs the api handlers */
    atomic_int inline_busy;   /* socket threads running a small request's handler */
    atomic_int trim_due;      /* a large request ended since the last trim */
    _Atomic double last_end;  /* when the last request ended (mono) */
    char *tls_cert, *tls_key; /* PEM text while serving HTTPS (tlsfiles.h) */
    const srv_config *cfg;
    api_ctx ctx;
    atomic_int draining;
    atomic_int inflight;
    uint16_t port;
    char addr[INET6_ADDRSTRLEN];
};

typedef struct req {
    workpool_job job; /* the api handler's run on the pool */
    http_server *h;
    struct MHD_Connection *c;
    conn *conn; /* the connection's record in h->conns (NULL if it could not be made) */
    double t0;
    route_result rr;
    route_match m;
    buf body;
    prescan pre;      /* the body's long base64 strings, decoded as they arrive */
    int body_started; /* its first bytes came: presized, prescan started (once) */
    int too_large;    /* the body outgrew max_body_bytes while streaming */
    int oom;          /* an allocation for the body failed: the rest is dropped, 503 */
    int must_close;   /* badly framed: the answer closes the connection */
    int admitted;     /* may be served while draining (conns_request) */
    int computing;    /* handed to the pool: the connection is suspended until done */
    atomic_int done;  /* the pool has run the handler: r holds the answer */
    api_req r;        /* the request as the handler sees it, and its answer */
    budget_ticket bt; /* its charges to the memory budget, released when it ends */
    apierr early;     /* a refusal decided before the body, answered on the next call */
    int counted;      /* counted in inflight (dispatched, answer not yet sent) */
    int responded;
    int status;
    size_t bytes_in, bytes_out;
    char method[8];
    char path[96];
    char session[SESSION_ID_MAX + 1];
} req;

/* Copies a client-controlled string for the log, replacing control bytes. */
static void copy_printable(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

static void add_header(struct MHD_Response *resp, const char *name, const char *value)
{
    if (MHD_add_response_header(resp, name, value) != MHD_YES)
        log_warn("could not add header %s", name);
}

/* Sends r's answer (or its error) and records what was sent. Takes r->out. */
static enum MHD_Result respond(http_server *h, struct MHD_Connection *c, req *q, api_req *r)
{
    int status = r->status ? r->status : 200;
    const char *ctype = r->content_type ? r->content_type : "application/json";
    if (r->err.code != APIERR_NONE) {
        status = apierr_status(r->err.code);
        ctype = "application/json";
        buf_free(&r->out);
        buf_init(&r->out);
        api_error_body(&r->out, &r->err);
        if (r->err.code == APIERR_INTERNAL)
            log_error("%s %s: %s", q->method, q->path, r->err.msg);
    }
    struct MHD_Response *resp;
    size_t len = 0;
    if (r->out.oom) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        buf_free(&r->out);
        status = 500;
        ctype = "application/json";
        len = sizeof oom - 1;
        resp = MHD_create_response_from_buffer(len, (void *)oom, MHD_RESPMEM_PERSISTENT);
    } else {
        char *data = buf_steal(&r->out, &len);
        if (!data)
            return MHD_NO;
        budget_ticket_adjust(&q->bt, len); /* held until the answer is sent */
        resp = MHD_create_response_from_buffer_with_free_callback(len, data, free);
        if (!resp)
            free(data);
    }
    if (!resp)
        return MHD_NO;
    if (status != 204)
        add_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (r->session[0]) {
        add_header(resp, "X-Session-Id", r->session);
        memcpy(q->session, r->session, sizeof q->session);
    }
    if (r->location[0])
        add_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    if (status == 405)
        add_header(resp, MHD_HTTP_HEADER_ALLOW, q->m.allow);
    if (status == 401)
        add_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"convd\"");
    if (r->err.code == APIERR_OUT_OF_MEMORY)
        add_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    /* while draining every answer ends its connection: no new request may come on it */
    if (q->must_close || atomic_load(&h->draining))
        add_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES) {
        q->responded = 1;
        q->status = status;
        q->bytes_out = len;
    }
    return ret;
}

static enum MHD_Result respond_error(http_server *h, struct MHD_Connection *c, req *q,
                                     const apierr *e)
{
    api_req r = {0};
    buf_init(&r.out);
    r.err = *e;
    return respond(h, c, q, &r);
}

static const char *header(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

/* Every check that needs no body (gate.c). 0: go on; -1: answer e now. */
static int early_checks(http_server *h, struct MHD_Connection *c, req *q, apierr *e)
{
    const gate_request g = {
        .method = q->method,
        .path = q->path,
        .rr = q->rr,
        .m = &q->m,
        .draining = atomic_load(&h->draining) && !q->admitted,
        .authorization = header(c, MHD_HTTP_HEADER_AUTHORIZATION),
        .content_type = header(c, MHD_HTTP_HEADER_CONTENT_TYPE),
        .content_length = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH),
    };
    return gate_check(h->cfg, &g, e);
}

static enum MHD_Result frame_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    gate_frame *f = cls;
    if (!key || !value)
        return MHD_YES;
    if (strpbrk(key, " \t") && !f->bad_name)
        f->bad_name = key;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        f->hosts++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (f->content_lengths++ == 0)
            f->content_length = value;
        else if (strcmp(value, f->content_length) != 0)
            f->lengths_differ = 1;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        if (f->transfer_encodings++ == 0)
            f->transfer_encoding = value;
    }
    return MHD_YES;
}

/* The framing check (gate_frame_check) over every header line as received. */
static int frame_check(struct MHD_Connection *c, const char *version, apierr *e)
{
    gate_frame f = {.http11 = strcmp(version, MHD_HTTP_VERSION_1_0) != 0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, frame_header, &f);
    return gate_frame_check(&f, e);
}

/* The declared Content-Length, -1 when there is none (chunked) or it is not a number. */
static long long content_length(struct MHD_Connection *c)
{
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl || *cl < '0' || *cl > '9')
        return -1;
    char *end;
    unsigned long long n = strtoull(cl, &end, 10);
    return *end || n > (unsigned long long)INT64_MAX ? -1 : (long long)n;
}

/* Whether the request announces a body (so answering early means not reading it). */
static int sends_body(struct MHD_Connection *c)
{
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strcmp(cl, "0") != 0)
        return 1;
    return header(c, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* With the first bytes of a body, reserves all its declared Content-Length (early_checks
 * refused more than max_body_bytes), so a large upload is allocated once instead of being
 * copied through a series of reallocations (pages the body never reaches, because prescan
 * takes its base64 out, are never touched), and starts the prescan of a large one. */
static void presize_body(const http_server *h, struct MHD_Connection *c, req *q)
{
    const char *cl = header(c, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl || *cl < '0' || *cl > '9')
        return;
    char *end;
    unsigned long long n = strtoull(cl, &end, 10);
    if (!*end && n <= h->cfg->max_body_bytes) {
        buf_presize(&q->body, (size_t)n);
        prescan_init(&q->pre, (size_t)n);
    }
}

/* 503 when the budget cannot take `need` more bytes now. */
static apierr over_budget(uint64_t need)
{
    apierr e;
    apierr_set(&e, APIERR_OUT_OF_MEMORY,
               "convd is at its memory budget (max_memory_bytes = %llu, %llu in use) and "
               "cannot take %llu more bytes for this request; retry in a moment",
               (unsigned long long)budget_limit(), (unsigned long long)budget_used(),
               (unsigned long long)need);
    return e;
}

static apierr out_of_memory(void)
{
    apierr e;
    apierr_set(&e, APIERR_OUT_OF_MEMORY,
               "convd ran out of memory reading the request body; retry later or send a "
               "smaller body");
    return e;
}

/* The api handler, on a pool thread; the connection is suspended meanwhile. */
static void run_handler(workpool_job *job)
{
    req *q = (req *)job;
    budget_request_enter(&q->bt);
    q->m.handler(&q->h->ctx, &q->r);
    budget_request_leave();
    atomic_store(&q->done, 1);
    MHD_resume_connection(q->c);
}

/* Queues the answer the handler left in q->r; the body is no longer needed. */
static enum MHD_Result answer(http_server *h, struct MHD_Connection *c, req *q)
{
    enum MHD_Result ret = respond(h, c, q, &q->r);
    buf_free(&q->r.out);
    buf_free(&q->body);
    prescan_free(&q->pre);
    return ret;
}

static enum MHD_Result dispatch(http_server *h, struct MHD_Connection *c, req *q)
{
    if (q->body.oom || prescan_finish(&q->pre, &q->body) < 0) {
        apierr e = out_of_memory();
        return respond_error(h, c, q, &e);
    }
    uint64_t text = q->body.len, small = text < JSONTENSOR_MIN ? text : JSONTENSOR_MIN;
    uint64_t parse = small * JSON_TREE_FACTOR + (text - small) * JSON_TENSOR_FACTOR;
    if (budget_ticket_charge(&q->bt, parse) != 0) {
        apierr e = over_budget(parse);
        return respond_error(h, c, q, &e);
    }
    /* In flight from here until MHD reports the answer sent. */
    if (!q->m.during_drain) {
        atomic_fetch_add(&h->inflight, 1);
        q->counted = 1;
    }
    api_req *r = &q->r;
    buf_init(&r->out);
    r->id = q->m.id[0] ? q->m.id : NULL;
    r->hdr_session = header(c, "X-Session-Id");
    r->q_output = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "output");
    r->q_limit = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    r->q_after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "after");
    r->body = q->body.data;
    r->body_len = q->body.len;
    r->pre = &q->pre;
    if (q->m.during_drain) {
        /* health and metrics: cheap, and answered even when every worker is busy */
        q->m.handler(&h->ctx, r);
        return answer(h, c, q);
    }
    if (q->bytes_in <= INLINE_MAX_BODY && atomic_fetch_add(&h->inline_busy, 1) < h->cfg->threads) {
        budget_request_enter(&q->bt);
        q->m.handler(&h->ctx, r);
        budget_request_leave();
        atomic_fetch_sub(&h->inline_busy, 1);
        return answer(h, c, q);
    }
    if (q->bytes_in <= INLINE_MAX_BODY)
        atomic_fetch_sub(&h->inline_busy, 1);
    q->computing = 1;
    q->job.run = run_handler;
    MHD_suspend_connection(c);
    workpool_submit(h->pool, &q->job);
    return MHD_YES;
}

static apierr too_large(const http_server *h)
{
    apierr e;
    apierr_set(&e, APIERR_PAYLOAD_TOO_LARGE,
               "the body is over max_body_bytes = %llu; send a smaller body or raise "
               "max_body_bytes",
               (unsigned long long)h->cfg->max_body_bytes);
    return e;
}

/* The body's declared length, charged before it is read: over the whole budget 413,
 * over what is left of it 503 (both answered at once, and the body is never read). */
static void budget_admit(struct MHD_Connection *c, req *q, apierr *e)
{
    long long cl = content_length(c);
    if (cl <= 0)
        return;
    if (budget_limit() && (uint64_t)cl > budget_limit())
        apierr_set(e, APIERR_PAYLOAD_TOO_LARGE,
                   "the body is %lld bytes, more than the whole memory budget "
                   "max_memory_bytes = %llu; send a smaller body or raise max_memory_bytes",
                   cl, (unsigned long long)budget_limit());
    else if (budget_ticket_charge(&q->bt, (uint64_t)cl) != 0)
        *e = over_budget((uint64_t)cl);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    http_server *h = cls;
    req *q = *con_cls;
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q)
            return MHD_NO;
        *con_cls = q;
        q->t0 = clock_mono();
        q->h = h;
        q->c = c;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        q->conn = ci ? ci->socket_context : NULL;
        buf_init(&q->body);
        copy_printable(q->method, sizeof q->method, method);
        copy_printable(q->path, sizeof q->path, url);
        q->rr = router_match(method, url, &q->m);
        if (frame_check(c, version, &q->early)) {
            q->must_close = 1;
            return respond_error(h, c, q, &q->early);
        }
        q->admitted = conns_request(h->conns, q->conn, sends_body(c), content_length(c));
        if (!early_checks(h, c, q, &q->early) && q->m.has_body)
            budget_admit(c, q, &q->early);
        if (q->early.code != APIERR_NONE) {
            /* Answering before a body is read makes MHD close the connection, which is
             * what a refused upload needs; a bodiless request keeps its connection and is
             * answered on the next call. */
            if (sends_body(c))
                return respond_error(h, c, q, &q->early);
            return MHD_YES;
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        q->bytes_in += n;
        conns_body(h->conns, q->conn, n);
        *upload_size = 0;
        if (q->responded || q->too_large || q->oom || q->early.code != APIERR_NONE)
            return MHD_YES; /* discard the rest */
        if (q->bytes_in > h->cfg->max_body_bytes) {
            /* A chunked body (no Content-Length) that outgrew the limit. MHD 0.9.75 cannot
             * answer mid-upload, so the rest is read and dropped, and 413 comes last. */
            q->too_large = 1;
            buf_free(&q->body);
            buf_init(&q->body);
            prescan_free(&q->pre);
            return MHD_YES;
        }
        if (!q->body_started) {
            q->body_started = 1;
            presize_body(h, c, q);
        }
        if (q->bytes_in > q->bt.held && budget_ticket_charge(&q->bt, q->bytes_in - q->bt.held)) {
            /* a chunked body outgrew the budget: dropped like an unallocatable one */
            q->oom = 1;
            buf_free(&q->body);
            buf_init(&q->body);
            prescan_free(&q->pre);
            return MHD_YES;
        }
        if (prescan_feed(&q->pre, &q->body, upload_data, n) < 0) {
            /* The rest is read and dropped like an oversized body's; 503 comes last. */
            q->oom = 1;
            buf_free(&q->body);
            buf_init(&q->body);
            prescan_free(&q->pre);
        }
        return MHD_YES;
    }
    if (q->responded)
        return MHD_YES;
    if (q->computing) /* resumed: the pool has run the handler */
        return atomic_load(&q->done) ? answer(h, c, q) : MHD_YES;
    conns_busy(h->conns, q->conn);
    if (q->early.code != APIERR_NONE)
        return respond_error(h, c, q, &q->early);
    if (q->too_large || q->oom) {
        apierr e = q->oom ? out_of_memory() : too_large(h);
        return respond_error(h, c, q, &e);
    }
    return dispatch(h, c, q);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    http_server *h = cls;
    req *q = *con_cls;
    if (!q)
        return;
    double dt = clock_mono() - q->t0;
    int status = q->responded ? q->status : 0;
    metrics_request(q->m.ep, status, dt, q->bytes_in, q->bytes_out);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !q->responded)
        log_info("%s %s aborted (%d) in=%zu %.3fms", q->method, q->path, (int)toe, q->bytes_in,
                 dt * 1e3);
    else
        log_info("%s %s %d in=%zu out=%zu %.3fms%s%s", q->method, q->path, status, q->bytes_in,
                 q->bytes_out, dt * 1e3, q->session[0] ? " session=" : "", q->session);
    conns_answered(h->conns, q->conn);
    if (q->counted)
        atomic_fetch_sub(&h->inflight, 1);
    buf_free(&q->r.out);
    buf_free(&q->body);
    prescan_free(&q->pre);
    if (q->bt.held >= TRIM_AFTER_BYTES)
        atomic_store(&h->trim_due, 1);
    budget_request_end(&q->bt);
    free(q);
    atomic_store(&h->last_end, clock_mono());
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? conns_open(h->conns, ci->connect_fd) : NULL;
    } else {
        conns_close(h->conns, *socket_context);
        *socket_context = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("libmicrohttpd: %s", msg);
}

/* One per inline slot and one always free (INLINE_MAX_BODY); MHD divides max_connections
 * among them and needs one at least each. */
static int socket_threads(const srv_config *cfg)
{
    int n = cfg->threads + 1;
    return n < cfg->max_connections ? n : cfg->max_connections;
}

int http_start(const srv_config *cfg, session_store *st, http_server **out, char *err, size_t n)
{
    *out = NULL;
    struct sockaddr_storage ss;
    socklen_t sl;
    int v6;
    if (listenaddr_resolve(cfg, &ss, &sl, &v6, err, n))
        return -1;
    http_server *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    h->cfg = cfg;
    h->ctx.store = st;
    h->ctx.cfg = cfg;
    h->ctx.draining = &h->draining;
    if (v6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, h->addr, sizeof h->addr);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, h->addr, sizeof h->addr);

    const conns_opts co = {.header_timeout = cfg->header_timeout,
                           .connection_timeout = cfg->connection_timeout,
                           .body_min_rate = cfg->body_min_rate};
    if (conns_new(&co, &h->conns) != 0 || workpool_new(cfg->threads, &h->pool) != 0) {
        snprintf(err, n, "cannot start the server's threads (out of memory?)");
        http_stop(h);
        return -1;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_ALLOW_SUSPEND_RESUME;
    /* poll, not epoll: with a thread pool, 0.9.75's MHD_quiesce_daemon races a worker that
     * takes the listening socket out of its own epoll set, and loses with MHD_PANIC ("Failed
     * to remove listen FD from epoll set"). poll has no such set, and at our connection
     * limit it costs nothing measurable. */
    flags |= MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES ? MHD_USE_POLL : MHD_USE_AUTO;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (tlsfiles_load(cfg, &h->tls_cert, &h->tls_key, err, n) != 0) {
        http_stop(h);
        return -1;
    }
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_KEY, 0, h->tls_key},
        {MHD_OPTION_HTTPS_MEM_CERT, 0, h->tls_cert},
        {MHD_OPTION_END, 0, NULL},
    };
    if (h->tls_cert)
        flags |= MHD_USE_TLS;
    else
        tls[0].option = MHD_OPTION_END;
    /* the logger goes first, or MHD logs the options that precede it its own way */
    h->d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
        h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)socket_threads(cfg), MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)ceil(cfg->connection_timeout), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections_per_ip, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONNECTION_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, n,
                 "cannot listen on %s port %d (address in use, or not an address of "
                 "this host?%s)",
                 cfg->bind, cfg->port,
                 h->tls_cert ? " or tls_cert and tls_key are not a matching certificate and key"
                             : "");
        http_stop(h);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : (uint16_t)cfg->port;
    *out = h;
    return 0;
}

const char *http_addr(const http_server *h)
{
    return h->addr;
}

uint16_t http_port(const http_server *h)
{
    return h->port;
}

void http_begin_drain(http_server *h, double timeout_s)
{
    atomic_store(&h->draining, 1);
    conns_begin_drain(h->conns, clock_mono() + timeout_s);
}

int http_inflight(http_server *h)
{
    return atomic_load(&h->inflight) + conns_owed(h->conns);
}

void http_housekeeping(http_server *h)
{
    if (atomic_load(&h->trim_due) && atomic_load(&h->inflight) == 0 &&
        clock_mono() - atomic_load(&h->last_end) >= TRIM_IDLE_S) {
        atomic_store(&h->trim_due, 0);
        malloc_trim(0);
    }
}

void http_quiesce(http_server *h)
{
    MHD_socket fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

void http_stop(http_server *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    workpool_free(h->pool);
    conns_free(h->conns);
    tlsfiles_free(h->tls_cert, h->tls_key);
    free(h);
}
