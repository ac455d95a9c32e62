/*
 * slowloris.c — limits and slow clients, against one daemon (run by `make soak` before the
 * soak). Usage: slowloris CONVD [SLOW_SECONDS].
 *  1. A forward whose input would need ~130 GB (a 40000x40000 x: 12.8 GB cached, ~115 GB
 *     of im2col workspace) must be refused with 413 naming max_session_bytes, before the
 *     data is decoded: timed over 200 requests, inline and on a session (which must be left
 *     unchanged).
 *  2. SLOW_CONNS connections trickle a byte a second (half in their headers, half in a body
 *     that never completes) for SLOW_SECONDS while a client keeps asking GET /healthz on a
 *     fresh connection and the notebook forward on a kept-alive one; every one of those must
 *     succeed, none slower than MAX_LATENCY_S.
 *  3. Informational: IDLE_FLOOD idle connections (more than the daemon's connection limit);
 *     whether a new client is still served is reported, and once they close it must be.
 * Exit 0 when every check passes and the daemon exits 0 on SIGTERM.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../integration/client.h"
#include "../integration/daemon.h"
#include "soakutil.h"

#define SLOW_CONNS    200
#define IDLE_FLOOD    1100
#define MAX_LATENCY_S 2.0
#define LIMIT_REPS    200

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        failures++;
        printf("  FAIL: %s\n", what);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *error_message(const http_res *r)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    return cJSON_IsString(m) ? m->valuestring : "";
}

/* 1: the 100 GB request. */
static void huge_input(const char *base)
{
    static const char layer[] = "{\"in_channels\":1,\"out_channels\":1,\"kernel_size\":3}";
    static const char x[] = "{\"shape\":[1,1,40000,40000],\"data\":[0]}";
    char body[512];
    double t[LIMIT_REPS];
    CURL *h = curl_easy_init();
    snprintf(body, sizeof body, "{\"layer\":%s,\"x\":%s}", layer, x);
    int bad = 0;
    char msg[600] = "";
    for (int i = 0; i < LIMIT_REPS; i++) {
        http_res r;
        http_do(h, base, "POST", "/forward", body, strlen(body), NULL, &r);
        t[i] = r.seconds;
        if (r.status != 413 || !strstr(error_message(&r), "max_session_bytes") || r.has_session_id)
            bad++;
        if (i == 0)
            snprintf(msg, sizeof msg, "%ld %s", r.status, r.body);
        http_res_free(&r);
    }
    qsort(t, LIMIT_REPS, sizeof t[0], cmp_double);
    printf("100 GB input, inline layer: %d requests, median %.0f us, max %.0f us (client wall "
           "time, loopback)\n  answer: %s\n",
           LIMIT_REPS, t[LIMIT_REPS / 2] * 1e6, t[LIMIT_REPS - 1] * 1e6, msg);
    check(bad == 0, "every 100 GB request answers 413 naming max_session_bytes, no session");

    /* on a session: refused the same way, and the session is left as it was */
    http_res r;
    http_do(h, base, "POST", "/sessions", layer, strlen(layer), NULL, &r);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(r.json, "session");
    char id[64] = "";
    if (cJSON_IsString(s))
        snprintf(id, sizeof id, "%s", s->valuestring);
    http_res_free(&r);
    check(id[0] != 0, "POST /sessions for the 100 GB session test");
    snprintf(body, sizeof body, "{\"session\":\"%s\",\"x\":%s}", id, x);
    http_do(h, base, "POST", "/forward", body, strlen(body), NULL, &r);
    printf("100 GB input, on a session: %ld in %.0f us\n", r.status, r.seconds * 1e6);
    check(r.status == 413 && strstr(error_message(&r), "max_session_bytes"),
          "a session's 100 GB forward answers 413 naming max_session_bytes");
    http_res_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/sessions/%s", id);
    http_do(h, base, "GET", path, NULL, 0, NULL, &r);
    const cJSON *fw = cJSON_GetObjectItemCaseSensitive(r.json, "forwards");
    const cJSON *ca = cJSON_GetObjectItemCaseSensitive(r.json, "cached");
    check(r.status == 200 && cJSON_IsNumber(fw) && fw->valuedouble == 0 && cJSON_IsFalse(ca),
          "the refused forward left the session unchanged (forwards 0, nothing cached)");
    http_res_free(&r);
    curl_easy_cleanup(h);
}

typedef struct slow {
    int port, n;
    int fds[SLOW_CONNS];
    atomic_int stop;
    int closed_by_server;
} slow;

/* Sends one byte a second on every connection until stopped. */
static void *trickle(void *arg)
{
    slow *s = arg;
    while (!atomic_load(&s->stop)) {
        for (int i = 0; i < s->n; i++) {
            if (s->fds[i] < 0)
                continue;
            if (raw_send(s->fds[i], "a", 1) != 0) {
                close(s->fds[i]);
                s->fds[i] = -1;
                s->closed_by_server++;
            }
        }
        for (int k = 0; k < 10 && !atomic_load(&s->stop); k++)
            usleep(100 * 1000);
    }
    return NULL;
}

/* 2: slow clients must not stop others being served. */
static void slow_clients(const test_daemon *d, double seconds, const soak_notebook *nb)
{
    slow *s = calloc(1, sizeof *s);
    if (!s) {
        check(0, "out of memory");
        return;
    }
    s->port = daemon_port(d);
    for (int i = 0; i < SLOW_CONNS; i++) {
        int fd = raw_connect(s->port);
        s->fds[s->n++] = fd;
        if (fd < 0)
            continue;
        static const char slow_head[] = "POST /forward HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ";
        static const char slow_body[] = "POST /forward HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        "Content-Type: application/json\r\n"
                                        "Content-Length: 100000\r\n\r\n{\"x\":\"";
        const char *pre = i % 2 ? slow_body : slow_head;
        raw_send(fd, pre, strlen(pre));
    }
    int opened = 0;
    for (int i = 0; i < s->n; i++)
        opened += s->fds[i] >= 0;
    pthread_t th;
    pthread_create(&th, NULL, trickle, s);

    CURL *keep = curl_easy_init();
    char *fwd = NULL, *create = NULL;
    http_res r;
    if (asprintf(&create, "{\"W\":%s}", nb->W) < 0)
        create = NULL;
    http_do(keep, daemon_url(d), "POST", "/sessions", create, create ? strlen(create) : 0, NULL,
            &r);
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(r.json, "session");
    if (r.status != 201 || !cJSON_IsString(sid) ||
        asprintf(&fwd, "{\"session\":\"%s\",\"x\":%s}", sid->valuestring, nb->x) < 0)
        fwd = NULL;
    http_res_free(&r);
    free(create);
    check(fwd != NULL, "POST /sessions for the slow-client test");
    enum { MAXS = 4096 };
    double *lat = malloc(MAXS * sizeof *lat);
    int n = 0, bad = 0;
    double end = soak_now() + seconds;
    while (fwd && lat && soak_now() < end && n + 2 <= MAXS) {
        http_do(NULL, daemon_url(d), "GET", "/healthz", NULL, 0, NULL, &r); /* new connection */
        lat[n++] = r.seconds;
        bad += r.status != 200;
        http_res_free(&r);
        http_do(keep, daemon_url(d), "POST", "/forward", fwd, strlen(fwd), NULL, &r);
        double y[8];
        lat[n++] = r.seconds;
        bad += !(r.status == 200 &&
                 soak_tensor(cJSON_GetObjectItemCaseSensitive(r.json, "y"), y, 8) == 8 &&
                 soak_equal(y, nb->y, 8));
        http_res_free(&r);
        usleep(50 * 1000);
    }
    curl_easy_cleanup(keep);
    atomic_store(&s->stop, 1);
    pthread_join(th, NULL);
    int still_open = 0;
    for (int i = 0; i < s->n; i++)
        if (s->fds[i] >= 0) {
            still_open++;
            close(s->fds[i]);
        }
    double maxl = 0;
    if (n > 0) {
        qsort(lat, (size_t)n, sizeof lat[0], cmp_double);
        maxl = lat[n - 1];
    }
    printf("slow clients: %d connections trickling 1 byte/s for %.0f s (%d still open at the "
           "end, %d closed by the daemon); meanwhile %d requests from another client: %d "
           "failed, median %.2f ms, p99 %.2f ms, max %.2f ms\n",
           opened, seconds, still_open, s->closed_by_server, n, bad, n ? lat[n / 2] * 1e3 : 0,
           n ? lat[(n * 99) / 100] * 1e3 : 0, maxl * 1e3);
    check(opened == SLOW_CONNS, "all slow connections opened");
    check(n > 0 && bad == 0, "every request of the other client succeeded");
    check(maxl < MAX_LATENCY_S, "no request of the other client was slower than 2 s");
    free(lat);
    free(fwd);
    free(s);
}

/* 3: more idle connections than the daemon's connection limit (informational), then
 * recovery once they close (checked). */
static void idle_flood(const test_daemon *d)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < IDLE_FLOOD + 64) {
        rl.rlim_cur = rl.rlim_max < IDLE_FLOOD + 64 ? rl.rlim_max : IDLE_FLOOD + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int *fds = malloc(IDLE_FLOOD * sizeof *fds);
    if (!fds)
        return;
    int opened = 0;
    for (int i = 0; i < IDLE_FLOOD; i++) {
        fds[i] = raw_connect(daemon_port(d));
        opened += fds[i] >= 0;
    }
    usleep(300 * 1000);
    http_res r;
    http_do(NULL, daemon_url(d), "GET", "/healthz", NULL, 0, NULL, &r);
    printf("idle flood: %d idle connections open; a new client then got %ld (curl %d) in %.0f ms "
           "(informational: the daemon's connection limit and its fd limit bound this)\n",
           opened, r.status, r.curl_rc, r.seconds * 1e3);
    http_res_free(&r);
    for (int i = 0; i < IDLE_FLOOD; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    double until = soak_now() + 10;
    long st = 0;
    while (soak_now() < until) {
        http_do(NULL, daemon_url(d), "GET", "/healthz", NULL, 0, NULL, &r);
        st = r.status;
        http_res_free(&r);
        if (st == 200)
            break;
        usleep(100 * 1000);
    }
    check(st == 200, "the daemon serves again once the idle connections close");
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: slowloris CONVD [SLOW_SECONDS]\n");
        return 2;
    }
    double seconds = argc == 3 ? atof(argv[2]) : 20;
    setenv("CONVD_BIN", argv[1], 1);
    signal(SIGPIPE, SIG_IGN);
    soak_notebook nb;
    if (soak_notebook_load("tests/fixtures", &nb) != 0)
        return 2;
    curl_global_init(CURL_GLOBAL_ALL);
    test_daemon *d = daemon_start(NULL, NULL);
    if (!d)
        return 1;
    printf("slowloris: daemon %s (default settings)\n", daemon_url(d));
    huge_input(daemon_url(d));
    slow_clients(d, seconds, &nb);
    idle_flood(d);
    int rc = daemon_stop(d);
    check(rc == 0, "the daemon exits 0 on SIGTERM");
    printf("slowloris: %s\n", failures ? "FAIL" : "PASS");
    soak_notebook_free(&nb);
    curl_global_cleanup();
    return failures ? 1 : 0;
}
