/*
 * itest.h — cmocka-facing helpers shared by the integration test binaries: requests that
 * fail the test on a transport error, assertions on statuses, error bodies and tensors,
 * fixtures, session snapshots (to prove a bad request changed nothing) and Prometheus
 * text parsing. Assertions here call cmocka's fail(), so use them from the test thread
 * only (worker threads count their own failures).
 * Ownership: functions returning char * or cJSON * hand the caller a heap object.
 */
#ifndef ITEST_ITEST_H
#define ITEST_ITEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "client.h"
#include "daemon.h"
#include "ttensor.h"

/* malloc'd printf (fails the test when out of memory). */
char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses $CONVD_FIXTURES/name (default tests/fixtures); fails the test if it cannot. */
cJSON *fixture_load(const char *name);
/* cJSON_PrintUnformatted of a node (fails the test when NULL). */
char *json_text(const cJSON *node);

/* Every call fails the test if no HTTP answer arrives. hdrs may be NULL. */
void req(test_daemon *d, const char *method, const char *path, const char *body, http_res *r);
void req_h(test_daemon *d, const char *method, const char *path, const char *body,
           const char *const *hdrs, http_res *r);

/* Status check that prints the request's answer on a mismatch. */
void expect_status_at(const http_res *r, long status, const char *file, int line);
#define expect_status(r, s) expect_status_at((r), (s), __FILE__, __LINE__)

/* The contract's error shape: {"error":{"code","message"}} with this status and code
 * (code may list alternatives "a|b"), a non-empty message that names one of `fields`
 * ("a|b", NULL: not checked). */
void expect_error_at(const http_res *r, long status, const char *code, const char *fields,
                     const char *file, int line);
#define expect_error(r, s, c, f) expect_error_at((r), (s), (c), (f), __FILE__, __LINE__)

/* The same check without failing: 0, or -1 with the reason in why. */
int error_check(const http_res *r, long status, const char *code, const char *fields, char *why,
                size_t n);

/* Whether msg mentions field as a word (not inside a longer identifier). */
int msg_names(const char *msg, const char *field);
/* Whether msg, spaces removed, contains shape (e.g. "1,2,3,3"). */
int msg_has_shape(const char *msg, const char *shape);

/* The raw text of the value of "key" in a JSON object's text (the first occurrence of
 * "key": followed by an array, object, string or number), as the daemon printed it; NULL if
 * absent. Caller frees. Use it to check number printing: cJSON reprints with 15 digits. */
char *raw_member(const char *body, const char *key);

/* Member of an object; fails the test when absent. */
const cJSON *jget_at(const cJSON *obj, const char *key, const char *file, int line);
#define jget(o, k) jget_at((o), (k), __FILE__, __LINE__)
/* Number member; fails when absent or not a number. */
double jnum_at(const cJSON *obj, const char *key, const char *file, int line);
#define jnum(o, k) jnum_at((o), (k), __FILE__, __LINE__)

/* Reads a tensor (fails the test on a bad encoding). */
void tensor_read_at(const cJSON *node, ttensor *t, const char *what, const char *file, int line);
#define tensor_read(n, t, w) tensor_read_at((n), (t), (w), __FILE__, __LINE__)

/* got must be in `form` (base64: with dtype "float32"/"float64" as bits 32/64; bits 0: any)
 * and equal want within tol (absolute). */
void expect_tensor_at(const cJSON *got, const ttensor *want, tt_form form, int bits, double tol,
                      const char *what, const char *file, int line);
#define expect_tensor(g, w, f, b, tol, what)                                                       \
    expect_tensor_at((g), (w), (f), (b), (tol), (what), __FILE__, __LINE__)

/* POST /sessions with body `layer`; checks 201, Location, X-Session-Id and the body's
 * "session"; returns the id (caller frees). */
char *session_create_at(test_daemon *d, const char *layer, const char *file, int line);
#define session_create(d, l) session_create_at((d), (l), __FILE__, __LINE__)

/* What GET /sessions/{id}?output=flat shows, to prove a request changed nothing. */
typedef struct session_snap {
    char *W, *b; /* the tensors' text as the daemon printed them ("" when absent) */
    int cached;
    double forwards, backwards;
} session_snap;
void snap_take_at(test_daemon *d, const char *id, session_snap *s, const char *file, int line);
void snap_expect_same_at(test_daemon *d, const char *id, const session_snap *s, const char *file,
                         int line);
/* Non-fatal: 1 if unchanged, else prints both states and returns 0. */
int snap_same(test_daemon *d, const char *id, const session_snap *s);
void snap_free(session_snap *s);
#define snap_take(d, id, s)        snap_take_at((d), (id), (s), __FILE__, __LINE__)
#define snap_expect_same(d, id, s) snap_expect_same_at((d), (id), (s), __FILE__, __LINE__)

/* Sum of the values of every sample in a Prometheus text whose metric name (before '{'
 * or ' ') starts with `prefix` and contains every one of the NULL-terminated `parts`
 * (label text included). -1 when none matches. */
double prom_sum(const char *text, const char *prefix, const char *const *parts);

/* Monotonic seconds. */
double now_sec(void);
/* Sleeps ms milliseconds. */
void sleep_ms(int ms);

/* Starts a daemon or fails the test. */
test_daemon *start_or_fail_at(const char *const *args, const char *const *env, const char *file,
                              int line);
#define start_or_fail(a, e) start_or_fail_at((a), (e), __FILE__, __LINE__)
/* Stops a daemon and asserts exit status 0. */
void stop_expect_clean_at(test_daemon *d, const char *file, int line);
#define stop_expect_clean(d) stop_expect_clean_at((d), __FILE__, __LINE__)

/* The notebook fixture as ttensors: x (1,1,4,4), W (2,3,3), delta (2,2,2) and the
 * expected y (1,2,2,2), dx (1,1,4,4), dW (2,3,3), db (2). Loaded once, never freed. */
typedef struct notebook {
    ttensor x, W, delta, y, dx, dW, db;
} notebook;
const notebook *notebook_get(void);

/* curl_global_init + cmocka group run (with optional group setup/teardown) + cleanup:
 * the main() of every binary. */
int itest_main(const struct CMUnitTest *tests, size_t n, const char *group, CMFixtureFunction setup,
               CMFixtureFunction teardown);
#define ITEST_MAIN(tests, setup, teardown)                                                         \
    itest_main((tests), sizeof(tests) / sizeof((tests)[0]), __FILE__, (setup), (teardown))

/* The daemon shared by the tests of a binary run through ITEST_SHARED_MAIN. */
extern test_daemon *dmn;

/* itest_main for binaries whose tests share `dmn`: starts it with args (NULL: defaults)
 * before the first test, then runs `more` (may be NULL) for whatever else the group needs;
 * after the last test runs `less` (may be NULL), then kills dmn if it is still running. */
int itest_shared_main(const struct CMUnitTest *tests, size_t n, const char *group,
                      const char *const *args, CMFixtureFunction more, CMFixtureFunction less);
#define ITEST_SHARED_MAIN(tests, args, more, less)                                                 \
    itest_shared_main((tests), sizeof(tests) / sizeof((tests)[0]), __FILE__, (args), (more), (less))

/* A test for the end of such a binary: stops dmn and asserts it exits 0 (no leak under ASan,
 * no request left hanging). */
void itest_daemon_exits_cleanly(void **state);

#endif /* ITEST_ITEST_H */
