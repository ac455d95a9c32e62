/*
 * soak.c — mixed traffic against one daemon for a set time, watching its memory.
 * Usage: soak CONVD MINUTES FIXTURES_DIR (`make soak SOAK_MINUTES=N`).
 * The daemon runs with --idle-timeout 3 --max-sessions 200 --max-body-bytes 1 MiB. Threads:
 *  - VALID_THREADS workers own 64 sessions of the notebook layer and loop forward + backward
 *    on them, checking y, dx, dW and db against the fixture exactly (any failure fails);
 *  - a churn worker creates sessions (POST /sessions and inline forwards), deletes half
 *    (then expects 404) and leaves half to expire (then expects 410);
 *  - a bad worker sends a steady stream of malformed bodies, ragged and wrong-shaped tensors,
 *    oversized bodies, a 100 GB input, bad lr, wrong media type and method, and unknown
 *    sessions, many aimed at the valid workers' sessions, each expecting its status;
 *  - the main thread samples the daemon's VmRSS.
 * It reports RSS at start, after warm-up (10 % of the run, at least min(30 s, 25 %)) and at
 * the end, and requests by status; it fails if any valid request fails, any bad request gets
 * an unexpected answer, RSS grows more than 5 % after warm-up (SOAK_RSS_MAX_GROWTH), or the
 * daemon does not exit 0.
 * Loopback only; every request has a timeout, and the run ends at its deadline.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../integration/client.h"
#include "../integration/daemon.h"
#include "soakutil.h"

#define VALID_THREADS  4
#define VALID_SESSIONS 64
#define IDLE_TIMEOUT_S 3
#define MAX_BODY       (1 << 20)
#define MAX_SESSIONS   200

static const char *base;
static soak_notebook nb;
static double deadline;
static atomic_long by_status[600];
static atomic_long valid_failures, bad_mismatches, requests, early_resets;
static char valid_ids[VALID_SESSIONS][64];
static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;

static void note(const char *kind, const char *what, const http_res *r)
{
    pthread_mutex_lock(&report_mu);
    static int shown;
    if (shown++ < 20)
        fprintf(stderr, "soak: %s: %s -> %ld (curl %d) %.300s\n", kind, what, r->status, r->curl_rc,
                r->body ? r->body : "");
    pthread_mutex_unlock(&report_mu);
}

/* One request, counted by status. */
static int req(CURL *h, const char *method, const char *path, const char *body,
               const char *const *headers, http_res *r)
{
    http_do(h, base, method, path, body, body ? strlen(body) : 0, headers, r);
    atomic_fetch_add(&requests, 1);
    atomic_fetch_add(&by_status[r->status > 0 && r->status < 600 ? r->status : 0], 1);
    return (int)r->status;
}

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

static int field_equals(const http_res *r, const char *name, const double *want, long n)
{
    double got[32];
    return soak_tensor(cJSON_GetObjectItemCaseSensitive(r->json, name), got, 32) == n &&
           soak_equal(got, want, n);
}

static const char *error_code(const http_res *r)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    return cJSON_IsString(c) ? c->valuestring : "";
}

/* A valid request: status and (when want) the notebook values must be right. */
static void valid_check(int ok, const char *what, const http_res *r)
{
    if (ok)
        return;
    atomic_fetch_add(&valid_failures, 1);
    note("VALID REQUEST FAILED", what, r);
}

static int create_notebook_session(CURL *h, char *id, size_t cap)
{
    char *body = strf("{\"W\":%s}", nb.W);
    http_res r;
    int st = req(h, "POST", "/sessions", body, NULL, &r);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(r.json, "session");
    int ok = st == 201 && cJSON_IsString(s);
    if (ok)
        snprintf(id, cap, "%s", s->valuestring);
    valid_check(ok, "POST /sessions (notebook W)", &r);
    http_res_free(&r);
    free(body);
    return ok ? 0 : -1;
}

/* forward + backward on session id, checked against the fixture. */
static void notebook_round(CURL *h, const char *id, int flat)
{
    char *fb =
        strf("{\"session\":\"%s\",\"x\":%s%s}", id, nb.x, flat ? ",\"output\":\"flat\"" : "");
    char *bb = strf("{\"session\":\"%s\",\"delta\":%s}", id, nb.delta);
    http_res r;
    int st = req(h, "POST", "/forward", fb, NULL, &r);
    valid_check(st == 200 && field_equals(&r, "y", nb.y, 8), "forward (notebook)", &r);
    http_res_free(&r);
    st = req(h, "POST", "/backward", bb, NULL, &r);
    valid_check(st == 200 && field_equals(&r, "dx", nb.dx, 16) &&
                    field_equals(&r, "dW", nb.dW, 18) && field_equals(&r, "db", nb.db, 2),
                "backward (notebook)", &r);
    http_res_free(&r);
    free(fb);
    free(bb);
}

static void *valid_worker(void *arg)
{
    int w = (int)(intptr_t)arg;
    CURL *h = curl_easy_init();
    for (long it = 0; soak_now() < deadline; it++)
        for (int i = w; i < VALID_SESSIONS && soak_now() < deadline; i += VALID_THREADS)
            notebook_round(h, valid_ids[i], (int)((it + i) % 4 == 0));
    curl_easy_cleanup(h);
    return NULL;
}

typedef struct left {
    char id[64];
    double t;
} left;

/* Creates sessions, deletes half (then 404), leaves half to expire (then 410). */
static void *churn_worker(void *arg)
{
    (void)arg;
    CURL *h = curl_easy_init();
    enum { MAXLEFT = 512 };
    left *lf = calloc(MAXLEFT, sizeof *lf);
    int nl = 0;
    char *inline_body = strf("{\"layer\":{\"W\":%s},\"x\":%s}", nb.W, nb.x);
    for (long it = 0; lf && soak_now() < deadline; it++) {
        char id[64] = "";
        http_res r;
        if (it % 2 == 0) {
            if (create_notebook_session(h, id, sizeof id) != 0)
                continue;
        } else {
            int st = req(h, "POST", "/forward", inline_body, NULL, &r);
            valid_check(st == 200 && r.has_session_id && field_equals(&r, "y", nb.y, 8),
                        "inline forward (notebook layer)", &r);
            snprintf(id, sizeof id, "%.63s", r.session_id);
            http_res_free(&r);
        }
        char path[128];
        snprintf(path, sizeof path, "/sessions/%s", id);
        if (it % 4 < 2) {
            int st = req(h, "DELETE", path, NULL, NULL, &r);
            valid_check(st == 204, "DELETE /sessions/{id}", &r);
            http_res_free(&r);
            st = req(h, "GET", path, NULL, NULL, &r);
            valid_check(st == 404 && strcmp(error_code(&r), "session_not_found") == 0,
                        "GET of a deleted session (404)", &r);
            http_res_free(&r);
        } else if (nl < MAXLEFT) {
            snprintf(lf[nl].id, sizeof lf[nl].id, "%s", id);
            lf[nl++].t = soak_now();
        }
        /* probe the ones left long enough ago: idle timeout plus a reaper tick and slack */
        for (int i = 0; i < nl; i++) {
            if (soak_now() - lf[i].t < IDLE_TIMEOUT_S + 2.0)
                continue;
            snprintf(path, sizeof path, "/sessions/%s", lf[i].id);
            int st = req(h, "GET", path, NULL, NULL, &r);
            valid_check(st == 410 && strcmp(error_code(&r), "session_expired") == 0,
                        "GET of an expired session (410)", &r);
            http_res_free(&r);
            lf[i--] = lf[--nl];
        }
        usleep(40 * 1000);
    }
    free(inline_body);
    free(lf);
    curl_easy_cleanup(h);
    return NULL;
}

typedef struct bad_case {
    const char *name, *method, *path;
    int status;
    const char *code;
} bad_case;

static void bad_check(const bad_case *c, const http_res *r, int reset_ok)
{
    if (r->status == c->status && (!c->code || strcmp(error_code(r), c->code) == 0))
        return;
    /* The 413 for an oversized Content-Length is sent before the body is read, and the
     * connection is then closed: a client still sending may see the reset first. */
    if (reset_ok && r->status == 0 &&
        (r->curl_rc == CURLE_SEND_ERROR || r->curl_rc == CURLE_RECV_ERROR)) {
        atomic_fetch_add(&early_resets, 1);
        return;
    }
    atomic_fetch_add(&bad_mismatches, 1);
    note("UNEXPECTED ANSWER", c->name, r);
}

static void *bad_worker(void *arg)
{
    (void)arg;
    CURL *h = curl_easy_init();
    static const char *const text_plain[] = {"Content-Type: text/plain", NULL};
    /* a body over max_body_bytes: refused from its Content-Length */
    size_t big_n = MAX_BODY + MAX_BODY / 2;
    char *big = malloc(big_n + 1);
    if (big) {
        memset(big, ' ', big_n);
        memcpy(big, "{\"x\":[", 6);
        big[big_n - 2] = ']';
        big[big_n - 1] = '}';
        big[big_n] = '\0';
    }
    static const bad_case cases[] = {
        {"invalid JSON", "POST", "/forward", 400, "invalid_json"},
        {"ragged x", "POST", "/forward", 400, "invalid_tensor"},
        {"x with 2 channels for a 1-channel layer", "POST", "/forward", 400, "shape_mismatch"},
        {"delta of the wrong shape", "POST", "/backward", 400, "shape_mismatch"},
        {"unknown field", "POST", "/forward", 400, "invalid_argument"},
        {"negative lr", "POST", "/backward", 400, "invalid_argument"},
        {"unknown session", "POST", "/forward", 404, "session_not_found"},
        {"100 GB input", "POST", "/forward", 413, "payload_too_large"},
        {"body over max_body_bytes", "POST", "/forward", 413, "payload_too_large"},
        {"text/plain body", "POST", "/forward", 415, "unsupported_media_type"},
        {"PUT /forward", "PUT", "/forward", 405, "method_not_allowed"},
        {"base64 of the wrong length", "POST", "/forward", 400, "invalid_tensor"},
    };
    const int ncases = (int)(sizeof cases / sizeof cases[0]);
    unsigned rnd = 12345;
    for (long it = 0; soak_now() < deadline; it++) {
        const bad_case *c = &cases[it % ncases];
        rnd = rnd * 1103515245u + 12345u;
        const char *id = valid_ids[(rnd >> 8) % VALID_SESSIONS];
        char *body = NULL;
        const char *const *hdrs = NULL;
        switch (it % ncases) {
        case 0:
            body = strf("{\"session\":\"%s\",\"x\":[[[1,2],[3,4]]", id);
            break;
        case 1:
            body = strf("{\"session\":\"%s\",\"x\":[[[1,2,3,4],[5,6,7]]]}", id);
            break;
        case 2:
            body = strf("{\"session\":\"%s\",\"x\":[[[1,2,3,4]],[[5,6,7,8]]]}", id);
            break;
        case 3:
            body = strf("{\"session\":\"%s\",\"delta\":[[[1,2,3]]]}", id);
            break;
        case 4:
            body = strf("{\"sesion\":\"%s\",\"x\":%s}", id, nb.x);
            break;
        case 5:
            body = strf("{\"session\":\"%s\",\"delta\":%s,\"lr\":-1}", id, nb.delta);
            break;
        case 6:
            body = strf("{\"session\":\"%08x%08x%08x%08x\",\"x\":%s}", rnd, rnd * 7u, rnd * 13u,
                        rnd * 17u, nb.x);
            break;
        case 7:
            body =
                strf("{\"session\":\"%s\",\"x\":{\"shape\":[1,1,40000,40000],\"data\":[0]}}", id);
            break;
        case 8:
            body = big ? strdup(big) : NULL;
            break;
        case 9:
            body = strf("{\"session\":\"%s\",\"x\":%s}", id, nb.x);
            hdrs = text_plain;
            break;
        case 10:
            body = strf("{\"session\":\"%s\",\"x\":%s}", id, nb.x);
            break;
        default:
            body = strf("{\"session\":\"%s\",\"x\":{\"shape\":[1,1,4,4],\"dtype\":\"float32\","
                        "\"base64\":\"AACAPw==\"}}",
                        id);
            break;
        }
        if (!body)
            continue;
        http_res r;
        req(h, c->method, c->path, body, hdrs, &r);
        bad_check(c, &r, it % ncases == 8);
        http_res_free(&r);
        free(body);
        usleep(5 * 1000);
    }
    free(big);
    curl_easy_cleanup(h);
    return NULL;
}

static double mib(long kb)
{
    return kb / 1024.0;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: soak CONVD MINUTES FIXTURES_DIR\n");
        return 2;
    }
    double minutes = atof(argv[2]);
    if (!(minutes > 0)) {
        fprintf(stderr, "soak: MINUTES must be > 0\n");
        return 2;
    }
    setenv("CONVD_BIN", argv[1], 1);
    signal(SIGPIPE, SIG_IGN);
    if (soak_notebook_load(argv[3], &nb) != 0)
        return 2;
    curl_global_init(CURL_GLOBAL_ALL);
    static const char *const args[] = {
        "--idle-timeout", "3", "--max-sessions", "200", "--max-body-bytes", "1048576", NULL};
    test_daemon *d = daemon_start(args, NULL);
    if (!d)
        return 1;
    base = daemon_url(d);
    pid_t pid = daemon_pid(d);
    double total = minutes * 60, warm_s = total * 0.1;
    double floor_s = total * 0.25 < 30 ? total * 0.25 : 30;
    if (warm_s < floor_s)
        warm_s = floor_s;
    long rss_start = soak_rss_kb(pid);
    printf("soak: %s, %.1f min, daemon pid %d, --idle-timeout %d --max-sessions %d "
           "--max-body-bytes %d; %d valid threads on %d sessions, churn, bad\n",
           base, minutes, (int)pid, IDLE_TIMEOUT_S, MAX_SESSIONS, MAX_BODY, VALID_THREADS,
           VALID_SESSIONS);
    fflush(stdout);

    double t0 = soak_now();
    deadline = t0 + total;
    CURL *h = curl_easy_init();
    for (int i = 0; i < VALID_SESSIONS; i++)
        if (create_notebook_session(h, valid_ids[i], sizeof valid_ids[i]) == 0)
            notebook_round(h, valid_ids[i], 0); /* a cache before bad requests aim at it */
    curl_easy_cleanup(h);

    pthread_t th[VALID_THREADS + 2];
    for (int i = 0; i < VALID_THREADS; i++)
        pthread_create(&th[i], NULL, valid_worker, (void *)(intptr_t)i);
    pthread_create(&th[VALID_THREADS], NULL, churn_worker, NULL);
    pthread_create(&th[VALID_THREADS + 1], NULL, bad_worker, NULL);

    long rss_warm = -1, rss_max = 0;
    double next_print = t0 + 30;
    while (soak_now() < deadline) {
        usleep(200 * 1000);
        long kb = soak_rss_kb(pid);
        if (kb > rss_max)
            rss_max = kb;
        if (rss_warm < 0 && soak_now() - t0 >= warm_s)
            rss_warm = kb;
        if (soak_now() >= next_print) {
            printf("  %5.0f s: %ld requests, RSS %.1f MiB\n", soak_now() - t0,
                   atomic_load(&requests), mib(kb));
            fflush(stdout);
            next_print += 30;
        }
    }
    for (int i = 0; i < VALID_THREADS + 2; i++)
        pthread_join(th[i], NULL);
    double elapsed = soak_now() - t0;
    long rss_end = soak_rss_kb(pid);
    if (rss_warm < 0)
        rss_warm = rss_end;
    int rc = daemon_stop(d);

    double growth = rss_warm > 0 ? 100.0 * (double)(rss_end - rss_warm) / (double)rss_warm : 0;
    printf("RSS: start %.1f MiB, after warm-up (%.0f s) %.1f MiB, end %.1f MiB (%+.1f %% after "
           "warm-up), max %.1f MiB\n",
           mib(rss_start), warm_s, mib(rss_warm), mib(rss_end), growth, mib(rss_max));
    long n = atomic_load(&requests);
    printf("requests: %ld in %.0f s (%.0f/s); by status:", n, elapsed, n / elapsed);
    for (int s = 0; s < 600; s++)
        if (atomic_load(&by_status[s]))
            printf(" %d: %ld", s, atomic_load(&by_status[s]));
    printf("\n");
    long vf = atomic_load(&valid_failures), bm = atomic_load(&bad_mismatches);
    printf("(status 0 = no HTTP answer; %ld of them were oversized bodies reset after their early "
           "413)\n",
           atomic_load(&early_resets));
    printf("valid requests failed: %ld; unexpected answers to bad requests: %ld; daemon exit "
           "status %d\n",
           vf, bm, rc);
    /* SOAK_RSS_MAX_GROWTH (percent, default 5; negative: no check) — for sanitizer builds,
     * whose shadow memory makes RSS meaningless */
    const char *lim = getenv("SOAK_RSS_MAX_GROWTH");
    double max_growth = lim && *lim ? atof(lim) : 5.0;
    int ok = vf == 0 && bm == 0 && rc == 0 && (max_growth < 0 || growth <= max_growth);
    printf("soak: %s\n", ok ? "PASS" : "FAIL");
    soak_notebook_free(&nb);
    curl_global_cleanup();
    return ok ? 0 : 1;
}
