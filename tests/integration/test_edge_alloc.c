/*
 * test_edge_alloc.c — allocation failure, issue 13 item 1. The daemon runs with the
 * failalloc.so shim preloaded (tests/shim/failalloc.h); for each kind of request, the test
 * fails its 1st, 2nd, ... allocation in turn until a run reaches none: every run must get
 * the normal answer, a 500/503/413 error, or a closed connection, and /healthz must answer
 * right after. Then a notebook forward and backward must still give the right answers and
 * the daemon must exit 0 (under ASan: nothing leaked on any of those paths).
 * Also the remote crash of the prescan: a base64 body whose declared Content-Length the
 * prescan cannot allocate for (60 GB under --max-body-bytes 100G) must leave the daemon up.
 */
#include "itest.h"

#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../shim/failalloc.h"

#define MAX_NTH 5000 /* more allocations than any request here makes */

static failalloc_ctl *ctl;
static char ctl_path[64];
static char env_preload[1200], env_ctl[128];
static test_daemon *d;

/* The daemon's sanitizer runtime must accept a preloaded library before it, and return
 * NULL for an allocation it cannot serve instead of stopping the process. */
static void asan_options(void)
{
    const char *old = getenv("ASAN_OPTIONS");
    char *v = strf("%s%sverify_asan_link_order=0:allocator_may_return_null=1", old ? old : "",
                   old && *old ? ":" : "");
    setenv("ASAN_OPTIONS", v, 1);
    free(v);
}

static int setup(void **state)
{
    (void)state;
    asan_options();
    snprintf(ctl_path, sizeof ctl_path, "/tmp/convd-failalloc-XXXXXX");
    int fd = mkstemp(ctl_path);
    if (fd < 0 || ftruncate(fd, FAILALLOC_CTL_SIZE) != 0)
        return -1;
    void *m = mmap(NULL, FAILALLOC_CTL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -1;
    ctl = m;
    char *bin = strdup(daemon_bin());
    snprintf(env_preload, sizeof env_preload, "LD_PRELOAD=%s/tests/shim/failalloc.so",
             dirname(bin));
    free(bin);
    if (access(env_preload + strlen("LD_PRELOAD="), R_OK) != 0) {
        fprintf(stderr, "missing %s (make builds it with the tests)\n", env_preload + 11);
        return -1;
    }
    snprintf(env_ctl, sizeof env_ctl, "FAILALLOC_CTL=%s", ctl_path);
    static const char *const args[] = {"--threads", "2", NULL};
    const char *const env[] = {env_preload, env_ctl, NULL};
    d = daemon_start(args, env);
    return d ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    daemon_kill(d);
    if (ctl)
        munmap(ctl, FAILALLOC_CTL_SIZE);
    unlink(ctl_path);
    return 0;
}

/* One request of a kind, given a fresh session id to work on. */
typedef struct kind {
    const char *name, *method;
    long ok; /* the normal status */
    char *(*path)(const char *id);
    char *(*body)(const char *id);
    int needs_forward; /* the session must have a cached forward first */
} kind;

static char *nb_layer(void)
{
    const notebook *nb = notebook_get();
    return tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
}

static char *p_sessions(const char *id)
{
    (void)id;
    return strf("/sessions");
}
static char *p_forward(const char *id)
{
    (void)id;
    return strf("/forward");
}
static char *p_backward(const char *id)
{
    (void)id;
    return strf("/backward");
}
static char *p_session(const char *id)
{
    return strf("/sessions/%s", id);
}
static char *p_metrics(const char *id)
{
    (void)id;
    return strf("/metrics");
}
static char *b_none(const char *id)
{
    (void)id;
    return NULL;
}
static char *b_create(const char *id)
{
    (void)id;
    char *W = nb_layer(), *b = strf("{\"W\":%s,\"bias\":true}", W);
    free(W);
    return b;
}
static char *b_forward(const char *id)
{
    const notebook *nb = notebook_get();
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *b = strf("{\"session\":\"%s\",\"x\":%s}", id, x);
    free(x);
    return b;
}
static char *b_backward(const char *id)
{
    const notebook *nb = notebook_get();
    char *t = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *b = strf("{\"session\":\"%s\",\"delta\":%s}", id, t);
    free(t);
    return b;
}
/* A stateless forward whose x is large enough for the prescan (base64, 2x4x100x100). */
static char *b_big_forward(const char *id)
{
    (void)id;
    int64_t xs[4] = {2, 4, 100, 100}, ws[4] = {2, 4, 1, 1};
    ttensor x, W;
    tt_make(&x, 4, xs, NULL);
    tt_make(&W, 4, ws, NULL);
    for (size_t i = 0; i < x.n; i++)
        x.data[i] = (double)(i % 7) / 4;
    for (size_t i = 0; i < W.n; i++)
        W.data[i] = (double)i / 8;
    char *xj = tt_json(x.data, 4, xs, TT_BASE64, 32, 1),
         *Wj = tt_json(W.data, 4, ws, TT_BASE64, 32, 1);
    char *b = strf("{\"layer\":{\"W\":%s},\"x\":%s,\"output\":\"base64\"}", Wj, xj);
    free(xj);
    free(Wj);
    tt_free(&x);
    tt_free(&W);
    return b;
}

static const kind kinds[] = {
    {"create a session", "POST", 201, p_sessions, b_create, 0},
    {"session forward", "POST", 200, p_forward, b_forward, 0},
    {"session backward", "POST", 200, p_backward, b_backward, 1},
    {"large base64 forward", "POST", 200, p_forward, b_big_forward, 0},
    {"get a session", "GET", 200, p_session, b_none, 1},
    {"delete a session", "DELETE", 204, p_session, b_none, 0},
    {"metrics", "GET", 200, p_metrics, b_none, 0},
};

static void arm(long nth)
{
    atomic_store(&ctl->count, 0);
    atomic_store(&ctl->failed, 0);
    atomic_store(&ctl->nth, nth);
}

static long disarm(void)
{
    atomic_store(&ctl->nth, 0);
    return atomic_load(&ctl->failed);
}

/* A status an allocation failure may end in: the normal one, an error the contract names
 * for a lack of memory or a server fault, or no answer (the connection closed). */
static int acceptable(const kind *k, const http_res *r)
{
    if (r->status == k->ok || r->status == 0)
        return 1;
    char why[256];
    return error_check(r, 500, "internal", NULL, why, sizeof why) == 0 ||
           error_check(r, 503, "out_of_memory", NULL, why, sizeof why) == 0 ||
           error_check(r, 413, "payload_too_large", NULL, why, sizeof why) == 0;
}

static void walk(const kind *k)
{
    char *id = session_create(d, "{\"W\":[[[[1,2],[3,4]]]]}");
    char *id_nb = NULL;
    if (k->body == b_forward || k->body == b_backward) {
        free(id);
        char *layer = b_create(NULL);
        id = session_create(d, layer);
        free(layer);
    }
    long nth;
    for (nth = 1; nth <= MAX_NTH; nth++) {
        if (k->needs_forward) {
            char *fb = k->body == b_backward
                           ? b_forward(id)
                           : strf("{\"session\":\"%s\",\"x\":[[[[1,2],[3,4]]]]}", id);
            http_res f;
            req(d, "POST", "/forward", fb, &f);
            expect_status(&f, 200);
            http_res_free(&f);
            free(fb);
        }
        char *path = k->path(id), *body = k->body(id);
        http_res r;
        arm(nth);
        int rc =
            http_do(NULL, daemon_url(d), k->method, path, body, body ? strlen(body) : 0, NULL, &r);
        long failed = disarm();
        (void)rc;
        if (!acceptable(k, &r))
            fail_msg("%s with allocation %ld failing: %ld %s", k->name, nth, r.status, r.body);
        http_res_free(&r);
        free(path);
        free(body);
        http_res h;
        req(d, "GET", "/healthz", NULL, &h);
        expect_status(&h, 200);
        http_res_free(&h);
        if (!failed)
            break;
        if (k->body == b_create || k->method[0] == 'D') {
            /* a session may have been made or deleted: start the next run from a new one */
            free(id);
            id = session_create(d, "{\"W\":[[[[1,2],[3,4]]]]}");
        }
    }
    print_message("%s: failed each of its %ld allocations in turn\n", k->name, nth - 1);
    assert_true(nth > 1 && nth <= MAX_NTH);
    free(id);
    free(id_nb);
}

static void test_each_allocation_fails(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        walk(&kinds[i]);
}

/* After all of that, the notebook still computes right. */
static void test_notebook_after(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *layer = b_create(NULL);
    char *id = session_create(d, layer);
    char *fb = b_forward(id), *bb = b_backward(id);
    http_res r;
    req(d, "POST", "/forward", fb, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 1e-9, "y");
    http_res_free(&r);
    req(d, "POST", "/backward", bb, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 1e-9, "dW");
    expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 1e-9, "dx");
    http_res_free(&r);
    free(layer);
    free(id);
    free(fb);
    free(bb);
}

static void test_exits_cleanly(void **state)
{
    (void)state;
    stop_expect_clean(d);
    d = NULL;
}

/* The prescan's room for a 60 GB base64 string cannot be allocated: the daemon must read
 * on (or close the connection), never write through the failed allocation. */
static void test_prescan_allocation_fails(void **state)
{
    (void)state;
    static const char *const args[] = {"--max-body-bytes", "100G", NULL};
    test_daemon *p = start_or_fail(args, NULL);
    int fd = raw_connect(daemon_port(p));
    assert_true(fd >= 0);
    const char *head = "POST /forward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                       "application/json\r\nContent-Length: 60000000000\r\n\r\n"
                       "{\"layer\":{\"W\":[[[[1]]]]},\"x\":{\"shape\":[1,1,1,1],\"dtype\":"
                       "\"float32\",\"base64\":\"";
    assert_int_equal(raw_send(fd, head, strlen(head)), 0);
    enum { CHUNK = 1 << 16, CHUNKS = 16 };
    char *a = malloc(CHUNK);
    memset(a, 'A', CHUNK);
    for (int i = 0; i < CHUNKS; i++)
        if (raw_send(fd, a, CHUNK) != 0)
            break; /* closing the connection is an acceptable way out */
    free(a);
    sleep_ms(200);
    close(fd);
    http_res r;
    req(p, "GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
    stop_expect_clean(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prescan_allocation_fails),
        cmocka_unit_test(test_each_allocation_fails),
        cmocka_unit_test(test_notebook_after),
        cmocka_unit_test(test_exits_cleanly),
    };
    return ITEST_MAIN(tests, setup, teardown);
}
