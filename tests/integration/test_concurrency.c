/*
 * test_concurrency.c — many clients at once (spec §4: requests on one session are
 * serialised, different sessions run in parallel). 16 threads each drive their own session
 * and 4 threads share one, 100 forward/backward pairs each, with stateless backwards mixed
 * in. Every answer is checked exactly against the notebook: a thread scaling x by s must
 * get y = s*y_nb; on the shared session a backward must see exactly one whole cached x
 * (dW = s'*dW_nb for one of the sharers' s'), never a torn mix. Worker threads count
 * failures (cmocka asserts are not thread-safe); the main thread asserts the totals and the
 * final counters. Then layers big enough for the core to split across its threads (the
 * daemon runs with --blas-threads 3, so helper threads are shared by the workers) from 6
 * clients at once: every answer equals, bit for bit, the one the same request got alone.
 */
#include "itest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { OWN_THREADS = 16, SHARED_THREADS = 4, ITERS = 100 };

typedef struct worker {
    pthread_t th;
    int index;
    double scale;    /* x is sent as scale * x_nb */
    const char *sid; /* session id */
    int shared;
    int failures;
    char first_failure[512];
} worker;

static void note(worker *w, const char *fmt, const char *detail)
{
    if (w->failures++ == 0)
        snprintf(w->first_failure, sizeof w->first_failure, fmt, detail);
}

/* 0 when node holds k * want exactly (shape included). */
static int scaled_equal(const cJSON *node, const ttensor *want, double k)
{
    ttensor t;
    char why[128];
    if (tt_from_json(node, &t, why, sizeof why) != 0)
        return -1;
    int ok = t.n == want->n && t.rank == want->rank &&
             memcmp(t.shape, want->shape, sizeof(int64_t) * (size_t)t.rank) == 0;
    for (size_t i = 0; ok && i < t.n; i++)
        ok = t.data[i] == k * want->data[i];
    tt_free(&t);
    return ok ? 0 : -1;
}

static void *run(void *arg)
{
    worker *w = arg;
    const notebook *nb = notebook_get();
    CURL *h = curl_easy_init();
    ttensor xs;
    tt_make(&xs, nb->x.rank, nb->x.shape, nb->x.data);
    for (size_t i = 0; i < xs.n; i++)
        xs.data[i] *= w->scale;
    char *x = tt_json(xs.data, xs.rank, xs.shape, TT_NESTED, 64, 1);
    char *d = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *fwd = NULL, *bwd = NULL, *stateless = NULL;
    if (!h || !x || !d || !W || asprintf(&fwd, "{\"session\":\"%s\",\"x\":%s}", w->sid, x) < 0 ||
        asprintf(&bwd, "{\"session\":\"%s\",\"delta\":%s}", w->sid, d) < 0 ||
        asprintf(&stateless, "{\"layer\":{\"W\":%s},\"x\":%s,\"delta\":%s}", W, x, d) < 0) {
        note(w, "%s", "setup failed");
        goto done;
    }
    for (int it = 0; it < ITERS; it++) {
        http_res r;
        if (http_do(h, daemon_url(dmn), "POST", "/forward", fwd, strlen(fwd), NULL, &r) != 0 ||
            r.status != 200)
            note(w, "forward: %s", r.body);
        else if (scaled_equal(cJSON_GetObjectItemCaseSensitive(r.json, "y"), &nb->y, w->scale))
            note(w, "forward y wrong: %s", r.body);
        http_res_free(&r);
        if (http_do(h, daemon_url(dmn), "POST", "/backward", bwd, strlen(bwd), NULL, &r) != 0 ||
            r.status != 200) {
            note(w, "backward: %s", r.body);
        } else {
            const cJSON *dW = cJSON_GetObjectItemCaseSensitive(r.json, "dW");
            int ok = 0;
            if (w->shared) {
                for (int s = 1; s <= SHARED_THREADS && !ok; s++)
                    ok = scaled_equal(dW, &nb->dW, s) == 0;
            } else {
                ok = scaled_equal(dW, &nb->dW, w->scale) == 0;
            }
            if (!ok || scaled_equal(cJSON_GetObjectItemCaseSensitive(r.json, "dx"), &nb->dx, 1) ||
                scaled_equal(cJSON_GetObjectItemCaseSensitive(r.json, "db"), &nb->db, 1))
                note(w, "backward grads wrong: %s", r.body);
        }
        http_res_free(&r);
        if (it % 5 == 0) {
            if (http_do(h, daemon_url(dmn), "POST", "/backward", stateless, strlen(stateless), NULL,
                        &r) != 0 ||
                r.status != 200 ||
                scaled_equal(cJSON_GetObjectItemCaseSensitive(r.json, "dW"), &nb->dW, w->scale) !=
                    0)
                note(w, "stateless backward: %s", r.body);
            http_res_free(&r);
        }
    }
done:
    free(fwd);
    free(bwd);
    free(stateless);
    free(x);
    free(d);
    free(W);
    tt_free(&xs);
    curl_easy_cleanup(h);
    return NULL;
}

static void test_many_clients(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *layer = strf("{\"W\":%s}", W);
    worker ws[OWN_THREADS + SHARED_THREADS];
    char *ids[OWN_THREADS + 1];
    memset(ws, 0, sizeof ws);
    for (int i = 0; i <= OWN_THREADS; i++)
        ids[i] = session_create(dmn, layer);
    for (int i = 0; i < OWN_THREADS + SHARED_THREADS; i++) {
        ws[i].index = i;
        ws[i].shared = i >= OWN_THREADS;
        ws[i].scale = ws[i].shared ? i - OWN_THREADS + 1 : (i % 5) + 1;
        ws[i].sid = ws[i].shared ? ids[OWN_THREADS] : ids[i];
    }
    double t0 = now_sec();
    for (int i = 0; i < OWN_THREADS + SHARED_THREADS; i++)
        assert_int_equal(pthread_create(&ws[i].th, NULL, run, &ws[i]), 0);
    int failures = 0;
    for (int i = 0; i < OWN_THREADS + SHARED_THREADS; i++) {
        pthread_join(ws[i].th, NULL);
        if (ws[i].failures) {
            print_error("thread %d: %d failures, first: %s\n", i, ws[i].failures,
                        ws[i].first_failure);
            failures += ws[i].failures;
        }
    }
    int requests = (OWN_THREADS + SHARED_THREADS) * (ITERS * 2 + (ITERS + 4) / 5);
    print_message("%d requests from %d threads in %.2f s\n", requests, OWN_THREADS + SHARED_THREADS,
                  now_sec() - t0);
    assert_int_equal(failures, 0);
    /* Counters: every request counted once, none lost to a race. */
    for (int i = 0; i <= OWN_THREADS; i++) {
        char *path = strf("/sessions/%s", ids[i]);
        http_res r;
        req(dmn, "GET", path, NULL, &r);
        expect_status(&r, 200);
        int n = i == OWN_THREADS ? SHARED_THREADS * ITERS : ITERS;
        assert_int_equal(jnum(r.json, "forwards"), n);
        assert_int_equal(jnum(r.json, "backwards"), n);
        expect_tensor(jget(r.json, "W"), &nb->W, TT_NESTED, 0, 0, "W after all");
        http_res_free(&r);
        free(path);
        free(ids[i]);
    }
    free(layer);
    free(W);
}

enum { BIG_THREADS = 6, BIG_ITERS = 8 };

typedef struct big_worker {
    pthread_t th;
    char *fwd, *bwd;          /* request bodies on this worker's session */
    const cJSON *y, *dx, *dW; /* the answers the same requests got alone */
    int failures;
    char first_failure[256];
} big_worker;

/* 0 when a and b hold the same tensor exactly. */
static int same_tensor(const cJSON *a, const cJSON *b)
{
    ttensor ta, tb;
    char why[128];
    if (!a || !b || tt_from_json(a, &ta, why, sizeof why) != 0)
        return -1;
    if (tt_from_json(b, &tb, why, sizeof why) != 0) {
        tt_free(&ta);
        return -1;
    }
    int ok = ta.n == tb.n && ta.rank == tb.rank &&
             memcmp(ta.shape, tb.shape, sizeof(int64_t) * (size_t)ta.rank) == 0 &&
             memcmp(ta.data, tb.data, sizeof(double) * ta.n) == 0;
    tt_free(&ta);
    tt_free(&tb);
    return ok ? 0 : -1;
}

static void big_note(big_worker *w, const char *what)
{
    if (w->failures++ == 0)
        snprintf(w->first_failure, sizeof w->first_failure, "%s", what);
}

static void *big_run(void *arg)
{
    big_worker *w = arg;
    CURL *h = curl_easy_init();
    for (int it = 0; h && it < BIG_ITERS; it++) {
        http_res r;
        if (http_do(h, daemon_url(dmn), "POST", "/forward", w->fwd, strlen(w->fwd), NULL, &r) !=
                0 ||
            r.status != 200 || same_tensor(cJSON_GetObjectItemCaseSensitive(r.json, "y"), w->y))
            big_note(w, "forward y differs from the request alone");
        http_res_free(&r);
        if (http_do(h, daemon_url(dmn), "POST", "/backward", w->bwd, strlen(w->bwd), NULL, &r) !=
                0 ||
            r.status != 200 || same_tensor(cJSON_GetObjectItemCaseSensitive(r.json, "dx"), w->dx) ||
            same_tensor(cJSON_GetObjectItemCaseSensitive(r.json, "dW"), w->dW))
            big_note(w, "backward dx or dW differs from the request alone");
        http_res_free(&r);
    }
    if (!h)
        big_note(w, "curl_easy_init failed");
    curl_easy_cleanup(h);
    return NULL;
}

/* 3 images of 16x32x32, 16 filters 3x3: 7 M multiply-adds a pass, over the core's split
 * threshold, so each request runs on the core's threads while other requests do too. */
static void test_split_layers_concurrently(void **state)
{
    (void)state;
    const int64_t xs[4] = {3, 16, 32, 32};
    const size_t n = 3 * 16 * 32 * 32;
    double *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (double)((i * 7919) % 2001) / 1000.0 - 1.0;
    char *xj = tt_json(x, 4, xs, TT_NESTED, 64, 1), *dj = tt_json(x, 4, xs, TT_NESTED, 64, 1);
    assert_non_null(xj);
    assert_non_null(dj);
    big_worker ws[BIG_THREADS];
    http_res alone_f[BIG_THREADS], alone_b[BIG_THREADS];
    char *ids[BIG_THREADS];
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < BIG_THREADS; i++) {
        /* two seeds, so sessions differ in W as well as being separate */
        char *layer = strf("{\"in_channels\":16,\"out_channels\":16,\"kernel_size\":3,"
                           "\"padding\":1,\"init\":{\"scheme\":\"kaiming_uniform\","
                           "\"seed\":%d}}",
                           i % 2);
        ids[i] = session_create(dmn, layer);
        free(layer);
        ws[i].fwd = strf("{\"session\":\"%s\",\"x\":%s}", ids[i], xj);
        ws[i].bwd = strf("{\"session\":\"%s\",\"delta\":%s}", ids[i], dj);
        req(dmn, "POST", "/forward", ws[i].fwd, &alone_f[i]);
        expect_status(&alone_f[i], 200);
        req(dmn, "POST", "/backward", ws[i].bwd, &alone_b[i]);
        expect_status(&alone_b[i], 200);
        ws[i].y = jget(alone_f[i].json, "y");
        ws[i].dx = jget(alone_b[i].json, "dx");
        ws[i].dW = jget(alone_b[i].json, "dW");
    }
    /* same seed, same answers: the sessions are independent of each other */
    assert_int_equal(same_tensor(ws[0].y, ws[2].y), 0);
    assert_int_equal(same_tensor(ws[0].dW, ws[2].dW), 0);
    for (int i = 0; i < BIG_THREADS; i++)
        assert_int_equal(pthread_create(&ws[i].th, NULL, big_run, &ws[i]), 0);
    int failures = 0;
    for (int i = 0; i < BIG_THREADS; i++) {
        pthread_join(ws[i].th, NULL);
        if (ws[i].failures)
            print_error("thread %d: %d failures, first: %s\n", i, ws[i].failures,
                        ws[i].first_failure);
        failures += ws[i].failures;
    }
    assert_int_equal(failures, 0);
    for (int i = 0; i < BIG_THREADS; i++) {
        http_res_free(&alone_f[i]);
        http_res_free(&alone_b[i]);
        free(ws[i].fwd);
        free(ws[i].bwd);
        free(ids[i]);
    }
    free(xj);
    free(dj);
    free(x);
}

static const char *const daemon_args[] = {"--threads", "4", "--blas-threads", "3", NULL};

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_clients),
        cmocka_unit_test(test_split_layers_concurrently),
        cmocka_unit_test(itest_daemon_exits_cleanly),
    };
    return ITEST_SHARED_MAIN(tests, daemon_args, NULL, NULL);
}
