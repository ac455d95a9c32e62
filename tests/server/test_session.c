/*
 * test_session.c — the session store: ids, acquire/release/delete, idle expiry (on access
 * and by the reaper), 410 for remembered dropped ids vs 404 for never-issued or deleted
 * ones, the remembered-id ring's bounds, the eviction rule and 429, and refcount
 * safety when a session is deleted while other threads hold or wait for it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "../../server/session.h"

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static session_store *store_with(int max, double idle, double evict_idle, size_t remember,
                                 double remember_s, int reaper)
{
    session_opts o;
    session_opts_default(&o, max, idle);
    o.evict_min_idle_s = evict_idle;
    o.remember_max = remember;
    o.remember_s = remember_s;
    o.reaper = reaper;
    session_store *st = NULL;
    assert_int_equal(session_store_new(&o, &st, NULL, 0), 0);
    assert_non_null(st);
    return st;
}

/* Creates a session with a real layer (so freeing it is exercised) and releases it. */
static void make(session_store *st, char id[SESSION_ID_MAX + 1])
{
    session *s = NULL;
    apierr e = {0};
    assert_int_equal(session_create(st, &s, &e), 0);
    cvd_conv2d_params p = {.in_channels = 1,
                           .out_channels = 2,
                           .groups = 1,
                           .kh = 3,
                           .kw = 3,
                           .sh = 1,
                           .sw = 1,
                           .dh = 1,
                           .dw = 1,
                           .bias = 1,
                           .dtype = CVD_F64};
    assert_int_equal(cvd_conv2d_create(&p, &s->layer, NULL), CVD_OK);
    memcpy(id, s->id, SESSION_ID_MAX + 1);
    session_release(st, s);
}

static apierr_code acquire_code(session_store *st, const char *id)
{
    session *s = NULL;
    apierr e = {0};
    if (session_acquire(st, id, &s, &e) == 0) {
        assert_non_null(s);
        session_release(st, s);
        return APIERR_NONE;
    }
    assert_null(s);
    assert_true(e.msg[0] != '\0');
    return e.code;
}

static void test_ids_are_hex_and_distinct(void **state)
{
    (void)state;
    session_store *st = store_with(64, 100, 60, 100, 100, 0);
    char ids[20][SESSION_ID_MAX + 1];
    for (int i = 0; i < 20; i++) {
        make(st, ids[i]);
        assert_int_equal(strlen(ids[i]), SESSION_ID_LEN);
        assert_int_equal(strspn(ids[i], "0123456789abcdef"), SESSION_ID_LEN);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(ids[i], ids[j]);
    }
    metrics_sessions ms;
    session_store_stats(st, &ms);
    assert_int_equal(ms.live, 20);
    assert_int_equal(ms.created, 20);
    session_store_free(st);
}

static void test_acquire_release_delete(void **state)
{
    (void)state;
    session_store *st = store_with(8, 100, 60, 100, 100, 0);
    char id[SESSION_ID_MAX + 1];
    make(st, id);
    session *s = NULL;
    apierr e = {0};
    assert_int_equal(session_acquire(st, id, &s, &e), 0);
    assert_string_equal(s->id, id);
    s->forwards = 7;
    session_release(st, s);
    assert_int_equal(session_acquire(st, id, &s, &e), 0);
    assert_int_equal(s->forwards, 7);
    session_release(st, s);

    assert_int_equal(session_delete(st, id, &e), 0);
    assert_int_equal(acquire_code(st, id), APIERR_SESSION_NOT_FOUND);
    assert_int_equal(session_delete(st, id, &e), -1);
    assert_int_equal(e.code, APIERR_SESSION_NOT_FOUND);
    metrics_sessions ms;
    session_store_stats(st, &ms);
    assert_int_equal(ms.live, 0);
    assert_int_equal(ms.deleted, 1);
    session_store_free(st);
}

static void test_unknown_and_malformed_ids_are_404(void **state)
{
    (void)state;
    session_store *st = store_with(8, 100, 60, 100, 100, 0);
    assert_int_equal(acquire_code(st, "0123456789abcdef0123456789abcdef"),
                     APIERR_SESSION_NOT_FOUND);
    assert_int_equal(acquire_code(st, "nope"), APIERR_SESSION_NOT_FOUND);
    assert_int_equal(acquire_code(st, ""), APIERR_SESSION_NOT_FOUND);
    assert_int_equal(acquire_code(st, "zz23456789abcdef0123456789abcdef"),
                     APIERR_SESSION_NOT_FOUND);
    session_store_free(st);
}

static void test_idle_expiry_on_access_is_410(void **state)
{
    (void)state;
    session_store *st = store_with(8, 0.1, 60, 100, 100, 0);
    char a[SESSION_ID_MAX + 1], b[SESSION_ID_MAX + 1];
    make(st, a);
    make(st, b);
    sleep_s(0.06);
    assert_int_equal(acquire_code(st, b), APIERR_NONE); /* use keeps b alive */
    sleep_s(0.06);
    assert_int_equal(acquire_code(st, a), APIERR_SESSION_EXPIRED);
    assert_int_equal(acquire_code(st, b), APIERR_NONE);
    /* delete of an expired id answers 410 as well */
    apierr e = {0};
    assert_int_equal(session_delete(st, a, &e), -1);
    assert_int_equal(e.code, APIERR_SESSION_EXPIRED);
    metrics_sessions ms;
    session_store_stats(st, &ms);
    assert_int_equal(ms.expired, 1);
    assert_int_equal(ms.live, 1);
    session_store_free(st);
}

static void test_reaper_expires_idle_sessions(void **state)
{
    (void)state;
    session_store *st = store_with(8, 0.05, 60, 100, 100, 1);
    char a[SESSION_ID_MAX + 1];
    make(st, a);
    metrics_sessions ms;
    for (int i = 0; i < 100; i++) {
        session_store_stats(st, &ms);
        if (ms.live == 0)
            break;
        sleep_s(0.02);
    }
    assert_int_equal(ms.live, 0);
    assert_int_equal(ms.expired, 1);
    assert_int_equal(acquire_code(st, a), APIERR_SESSION_EXPIRED);
    session_store_free(st);
}

static void test_held_session_does_not_expire(void **state)
{
    (void)state;
    session_store *st = store_with(8, 0.05, 60, 100, 100, 0);
    char a[SESSION_ID_MAX + 1];
    make(st, a);
    session *s;
    apierr e = {0};
    assert_int_equal(session_acquire(st, a, &s, &e), 0);
    sleep_s(0.1);
    assert_int_equal(session_store_reap(st), 0);
    session_release(st, s); /* release counts as use */
    assert_int_equal(session_store_reap(st), 0);
    sleep_s(0.1);
    assert_int_equal(session_store_reap(st), 1);
    session_store_free(st);
}

static void test_remembered_ids_are_bounded(void **state)
{
    (void)state;
    /* only the last 2 dropped ids are remembered */
    session_store *st = store_with(8, 0.02, 60, 2, 100, 0);
    char id[3][SESSION_ID_MAX + 1];
    for (int i = 0; i < 3; i++)
        make(st, id[i]);
    sleep_s(0.05);
    for (int i = 0; i < 3; i++)
        assert_int_equal(acquire_code(st, id[i]), APIERR_SESSION_EXPIRED);
    /* the ring now holds id[1], id[2]; a fourth drop pushes out id[1] */
    char d[SESSION_ID_MAX + 1];
    make(st, d);
    sleep_s(0.05);
    assert_int_equal(session_store_reap(st), 1);
    assert_int_equal(acquire_code(st, id[0]), APIERR_SESSION_NOT_FOUND);
    assert_int_equal(acquire_code(st, id[1]), APIERR_SESSION_NOT_FOUND);
    assert_int_equal(acquire_code(st, id[2]), APIERR_SESSION_EXPIRED);
    assert_int_equal(acquire_code(st, d), APIERR_SESSION_EXPIRED);
    session_store_free(st);

    /* ... and only for remember_s */
    st = store_with(8, 0.02, 60, 100, 0.05, 0);
    make(st, d);
    sleep_s(0.03);
    assert_int_equal(acquire_code(st, d), APIERR_SESSION_EXPIRED);
    sleep_s(0.08);
    assert_int_equal(acquire_code(st, d), APIERR_SESSION_NOT_FOUND);
    session_store_free(st);
}

static void test_eviction_and_429(void **state)
{
    (void)state;
    session_store *st = store_with(2, 100, 0.1, 100, 100, 0);
    char a[SESSION_ID_MAX + 1], b[SESSION_ID_MAX + 1], c[SESSION_ID_MAX + 1];
    make(st, a);
    make(st, b);
    session *s = NULL;
    apierr e = {0};
    /* nobody idle for evict_min_idle yet */
    assert_int_equal(session_create(st, &s, &e), -1);
    assert_int_equal(e.code, APIERR_TOO_MANY_SESSIONS);
    assert_non_null(strstr(e.msg, "max_sessions"));
    assert_null(s);
    sleep_s(0.15);
    assert_int_equal(acquire_code(st, a), APIERR_NONE); /* a is now the most recent */
    make(st, c);                                        /* evicts b, the LRU */
    assert_int_equal(acquire_code(st, b), APIERR_SESSION_EXPIRED);
    assert_int_equal(acquire_code(st, a), APIERR_NONE);
    assert_int_equal(acquire_code(st, c), APIERR_NONE);
    metrics_sessions ms;
    session_store_stats(st, &ms);
    assert_int_equal(ms.evicted, 1);
    assert_int_equal(ms.live, 2);
    session_store_free(st);
}

static void test_held_session_is_not_evicted(void **state)
{
    (void)state;
    session_store *st = store_with(1, 100, 0, 100, 100, 0);
    char a[SESSION_ID_MAX + 1];
    make(st, a);
    session *held, *s = NULL;
    apierr e = {0};
    assert_int_equal(session_acquire(st, a, &held, &e), 0);
    assert_int_equal(session_create(st, &s, &e), -1);
    assert_int_equal(e.code, APIERR_TOO_MANY_SESSIONS);
    session_release(st, held);
    assert_int_equal(session_create(st, &s, &e), 0); /* now a may go */
    session_release(st, s);
    assert_int_equal(acquire_code(st, a), APIERR_SESSION_EXPIRED);
    session_store_free(st);
}

/* ---- threads ---- */

typedef struct shared {
    session_store *st;
    char id[SESSION_ID_MAX + 1];
    int loops;
    int failures;
} shared;

static void *bump(void *arg)
{
    shared *sh = arg;
    for (int i = 0; i < sh->loops; i++) {
        session *s;
        apierr e = {0};
        if (session_acquire(sh->st, sh->id, &s, &e) != 0) {
            __atomic_add_fetch(&sh->failures, 1, __ATOMIC_RELAXED);
            continue;
        }
        uint64_t v = s->forwards; /* a read-modify-write the session lock must serialise */
        sched_yield();
        s->forwards = v + 1;
        session_release(sh->st, s);
    }
    return NULL;
}

static void test_requests_on_one_session_are_serialised(void **state)
{
    (void)state;
    shared sh = {.st = store_with(4, 100, 60, 100, 100, 1), .loops = 2000};
    make(sh.st, sh.id);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, bump, &sh), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(sh.failures, 0);
    session *s;
    apierr e = {0};
    assert_int_equal(session_acquire(sh.st, sh.id, &s, &e), 0);
    assert_int_equal(s->forwards, 4 * 2000);
    session_release(sh.st, s);
    session_store_free(sh.st);
}

static void *wait_acquire(void *arg)
{
    shared *sh = arg;
    session *s;
    apierr e = {0};
    int rc = session_acquire(sh->st, sh->id, &s, &e);
    if (rc == 0)
        session_release(sh->st, s);
    sh->failures = rc == 0 ? 0 : (int)e.code;
    return NULL;
}

static void test_delete_while_held_frees_on_last_release(void **state)
{
    (void)state;
    shared sh = {.st = store_with(4, 100, 60, 100, 100, 0)};
    make(sh.st, sh.id);
    session *held;
    apierr e = {0};
    assert_int_equal(session_acquire(sh.st, sh.id, &held, &e), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_acquire, &sh), 0);
    sleep_s(0.05); /* the thread is now blocked on the session's lock */
    assert_int_equal(session_delete(sh.st, sh.id, &e), 0);
    assert_int_equal(acquire_code(sh.st, sh.id), APIERR_SESSION_NOT_FOUND);
    held->backwards = 3; /* still ours to use until released */
    session_release(sh.st, held);
    pthread_join(t, NULL);
    assert_int_equal(sh.failures, APIERR_SESSION_NOT_FOUND);
    metrics_sessions ms;
    session_store_stats(sh.st, &ms);
    assert_int_equal(ms.live, 0);
    session_store_free(sh.st); /* ASan: nothing leaked, nothing freed twice */
}

static void *churn(void *arg)
{
    shared *sh = arg;
    for (int i = 0; i < sh->loops; i++) {
        char id[SESSION_ID_MAX + 1];
        session *s;
        apierr e = {0};
        if (session_create(sh->st, &s, &e) != 0)
            continue;
        memcpy(id, s->id, sizeof id);
        session_release(sh->st, s);
        if (session_acquire(sh->st, id, &s, &e) == 0)
            session_release(sh->st, s);
        if (i % 2)
            session_delete(sh->st, id, &e);
    }
    return NULL;
}

static void test_concurrent_churn(void **state)
{
    (void)state;
    /* tiny timeouts so the reaper and eviction race with creates and deletes */
    shared sh = {.st = store_with(16, 0.001, 0, 64, 100, 1), .loops = 3000};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, &sh), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    metrics_sessions ms;
    session_store_stats(sh.st, &ms);
    assert_true(ms.live <= 16);
    assert_int_equal(ms.created, ms.live + ms.expired + ms.evicted + ms.deleted);
    session_store_free(sh.st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_are_hex_and_distinct),
        cmocka_unit_test(test_acquire_release_delete),
        cmocka_unit_test(test_unknown_and_malformed_ids_are_404),
        cmocka_unit_test(test_idle_expiry_on_access_is_410),
        cmocka_unit_test(test_reaper_expires_idle_sessions),
        cmocka_unit_test(test_held_session_does_not_expire),
        cmocka_unit_test(test_remembered_ids_are_bounded),
        cmocka_unit_test(test_eviction_and_429),
        cmocka_unit_test(test_held_session_is_not_evicted),
        cmocka_unit_test(test_requests_on_one_session_are_serialised),
        cmocka_unit_test(test_delete_while_held_frees_on_last_release),
        cmocka_unit_test(test_concurrent_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
