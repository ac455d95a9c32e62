/*
 * test_durable.c — sessions that outlive the process (docs/api.md §8.1): what an answer
 * acknowledged (create, SGD step, PATCH, delete) is there after a real kill -9; a step in
 * flight at the kill is applied whole or not at all; the idle clock runs across a restart;
 * a backward after a restart is 409 naming the restart, unless persist_inputs; idle
 * sessions release their workspace and unload their layer; and a state dir that cannot be
 * used (damaged, truncated, newer schema, another program's file, no permission, in use,
 * another node's) stops the daemon at start with the file and the reason.
 */
#include "itest.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *make_dir(void)
{
    char tmpl[] = "/tmp/convd-durable-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strf("%s", d);
}

static void remove_dir(char *dir)
{
    char *cmd = strf("rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(dir);
}

static char *db_path(const char *dir)
{
    return strf("%s/convd.db", dir);
}

/* A daemon on dir with node name n1 and the extra flags (NULL-terminated, at most 6). */
static test_daemon *start_on(const char *dir, const char *const *extra)
{
    const char *args[16] = {"--state-dir", dir, "--node-name", "n1"};
    int k = 4;
    for (int i = 0; extra && extra[i] && k < 15; i++)
        args[k++] = extra[i];
    args[k] = NULL;
    return start_or_fail(args, NULL);
}

static char *nb_W(void)
{
    const notebook *nb = notebook_get();
    return tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
}

static char *nb_x(void)
{
    const notebook *nb = notebook_get();
    return tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
}

static char *nb_delta(void)
{
    const notebook *nb = notebook_get();
    return tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
}

/* POST path with body; expects `status`; returns the parsed answer's text (caller frees). */
static void post(test_daemon *d, const char *path, const char *body, long status, http_res *r)
{
    req(d, "POST", path, body, r);
    expect_status(r, status);
}

static void forward_nb(test_daemon *d, const char *id)
{
    char *x = nb_x();
    char *body = strf("{\"x\":%s}", x);
    char *path = strf("/sessions/%s/forward", id);
    http_res r;
    post(d, path, body, 200, &r);
    http_res_free(&r);
    free(path);
    free(body);
    free(x);
}

/* The weights as stored bits: W and b of GET ?output=base64 ("" when absent). */
static char *weights_of(test_daemon *d, const char *id)
{
    char *path = strf("/sessions/%s?output=base64", id);
    http_res r;
    req(d, "GET", path, NULL, &r);
    expect_status(&r, 200);
    char *W = raw_member(r.body, "W"), *b = raw_member(r.body, "b");
    char *out = strf("%s|%s", W ? W : "", b ? b : "");
    free(W);
    free(b);
    http_res_free(&r);
    free(path);
    return out;
}

static void expect_get(test_daemon *d, const char *id, long status, const char *code)
{
    char *path = strf("/sessions/%s", id);
    http_res r;
    req(d, "GET", path, NULL, &r);
    if (code)
        expect_error(&r, status, code, NULL);
    else
        expect_status(&r, status);
    http_res_free(&r);
    free(path);
}

static void test_acknowledged_changes_survive_kill9(void **state)
{
    (void)state;
    char *dir = make_dir();
    test_daemon *d = start_on(dir, NULL);
    char *W = nb_W(), *x = nb_x(), *delta = nb_delta();

    char *layer = strf("{\"W\":%s,\"b\":[0.5,-0.25]}", W);
    char *a = session_create(d, layer);
    assert_true(strncmp(a, "n1.", 3) == 0 && strlen(a) == 35);
    forward_nb(d, a);
    char *body = strf("{\"delta\":%s,\"lr\":0.01}", delta);
    char *path = strf("/sessions/%s/backward", a);
    http_res r;
    for (int i = 0; i < 3; i++) {
        post(d, path, body, 200, &r);
        http_res_free(&r);
    }
    free(path);
    free(body);

    /* an inline forward's session, whose b then changes by PATCH */
    body = strf("{\"layer\":{\"in_channels\":1,\"out_channels\":3,\"kernel_size\":[2,3],"
                "\"init\":{\"scheme\":\"normal\",\"seed\":7}},\"x\":%s}",
                x);
    post(d, "/forward", body, 200, &r);
    char *b = strf("%s", r.session_id);
    http_res_free(&r);
    free(body);
    path = strf("/sessions/%s", b);
    req(d, "PATCH", path, "{\"b\":[1,2,3]}", &r);
    expect_status(&r, 200);
    http_res_free(&r);
    free(path);

    char *c = session_create(d, layer);
    path = strf("/sessions/%s", c);
    req(d, "DELETE", path, NULL, &r);
    expect_status(&r, 204);
    http_res_free(&r);
    free(path);

    char *wa = weights_of(d, a), *wb = weights_of(d, b);
    daemon_kill(d); /* kill -9: no drain, no flush */

    d = start_on(dir, NULL);
    char *wa2 = weights_of(d, a), *wb2 = weights_of(d, b);
    assert_string_equal(wa2, wa);
    assert_string_equal(wb2, wb);
    assert_non_null(strstr(wb2, "\"shape\":[3]"));
    expect_get(d, c, 404, "session_not_found");

    /* the cache is not stored: 409 naming the restart, then a forward brings it back */
    body = strf("{\"delta\":%s}", delta);
    path = strf("/sessions/%s/backward", a);
    req(d, "POST", path, body, &r);
    expect_error(&r, 409, "no_forward_cache", NULL);
    assert_non_null(strstr(r.json ? r.body : "", "restarted"));
    http_res_free(&r);
    forward_nb(d, a);
    post(d, path, body, 200, &r);
    expect_tensor(jget(r.json, "dW"), &notebook_get()->dW, TT_NESTED, 0, 0, "dW after restart");
    http_res_free(&r);
    free(path);
    free(body);
    stop_expect_clean(d);

    free(wa);
    free(wb);
    free(wa2);
    free(wb2);
    free(a);
    free(b);
    free(c);
    free(layer);
    free(W);
    free(x);
    free(delta);
    remove_dir(dir);
}

typedef struct stepper {
    char url[64]; /* a copy: the daemon's own string goes with daemon_kill */
    const char *path, *body;
    atomic_int acked; /* steps answered 200 */
    atomic_int stop;
} stepper;

static void *step_loop(void *arg)
{
    stepper *s = arg;
    CURL *h = curl_easy_init();
    while (!atomic_load(&s->stop)) {
        http_res r;
        int rc = http_do(h, s->url, "POST", s->path, s->body, strlen(s->body), NULL, &r);
        int ok = rc == 0 && r.status == 200;
        http_res_free(&r);
        if (!ok)
            break;
        atomic_fetch_add(&s->acked, 1);
    }
    curl_easy_cleanup(h);
    return NULL;
}

/* SGD steps stream in; kill -9 lands between or inside one. Since dW does not depend on W,
 * W after m steps is W0 - m*lr*dW: the stored W must be that for m = the steps answered,
 * or one more (the step in flight, applied whole). */
static void test_step_in_flight_is_whole(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    const double lr = 1.0 / 1024; /* a power of two: every step is exact in float64 */
    for (int pass = 0; pass < 3; pass++) {
        char *dir = make_dir();
        test_daemon *d = start_on(dir, NULL);
        char *W = nb_W(), *delta = nb_delta();
        char *layer = strf("{\"W\":%s,\"bias\":false}", W);
        char *id = session_create(d, layer);
        forward_nb(d, id);
        char *path = strf("/sessions/%s/backward", id);
        char *body = strf("{\"delta\":%s,\"lr\":%.17g,\"need\":[\"dW\"]}", delta, lr);
        stepper s = {.path = path, .body = body};
        snprintf(s.url, sizeof s.url, "%s", daemon_url(d));
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, step_loop, &s), 0);
        sleep_ms(150 + 100 * pass);
        daemon_kill(d);
        pthread_join(t, NULL);
        int acked = atomic_load(&s.acked);

        d = start_on(dir, NULL);
        char *gp = strf("/sessions/%s?output=flat", id);
        http_res r;
        req(d, "GET", gp, NULL, &r);
        expect_status(&r, 200);
        ttensor got;
        tensor_read(jget(r.json, "W"), &got, "W");
        /* m from the first element, then every element must agree with it */
        double m = round((nb->W.data[0] - got.data[0]) / (lr * nb->dW.data[0]));
        print_message("pass %d: %d steps answered, %g stored\n", pass, acked, m);
        assert_true(m == acked || m == acked + 1);
        for (size_t i = 0; i < got.n; i++) {
            double want = nb->W.data[i];
            for (int k = 0; k < (int)m; k++)
                want -= lr * nb->dW.data[i];
            assert_true(fabs(got.data[i] - want) <= 1e-9 * (1 + fabs(want)));
        }
        tt_free(&got);
        http_res_free(&r);
        stop_expect_clean(d);
        free(gp);
        free(path);
        free(body);
        free(id);
        free(layer);
        free(W);
        free(delta);
        remove_dir(dir);
    }
}

static void test_idle_clock_runs_across_restart(void **state)
{
    (void)state;
    char *dir = make_dir();
    static const char *const idle[] = {"--idle-timeout", "3", NULL};
    test_daemon *d = start_on(dir, idle);
    char *W = nb_W();
    char *layer = strf("{\"W\":%s}", W);
    char *old = session_create(d, layer);
    sleep_ms(1500);
    char *fresh = session_create(d, layer);
    stop_expect_clean(d);
    sleep_ms(1000);
    d = start_on(dir, idle);
    sleep_ms(800); /* old: ~3.3 s idle in all, fresh: ~1.8 s */
    expect_get(d, old, 410, "session_expired");
    expect_get(d, fresh, 200, NULL);
    stop_expect_clean(d);
    /* the 410 itself is remembered across a restart */
    d = start_on(dir, idle);
    expect_get(d, old, 410, "session_expired");
    stop_expect_clean(d);
    free(old);
    free(fresh);
    free(layer);
    free(W);
    remove_dir(dir);
}

static void test_persist_inputs_keeps_the_cache(void **state)
{
    (void)state;
    char *top = make_dir();
    char *dir = strf("%s/missing/parents", top); /* created, as make run's var/state */
    static const char *const persist[] = {"--persist-inputs", "true", NULL};
    test_daemon *d = start_on(dir, persist);
    char *W = nb_W(), *delta = nb_delta();
    char *layer = strf("{\"W\":%s}", W);
    char *id = session_create(d, layer);
    forward_nb(d, id);
    daemon_kill(d);
    d = start_on(dir, persist);
    char *body = strf("{\"delta\":%s}", delta);
    char *path = strf("/sessions/%s/backward", id);
    http_res r;
    post(d, path, body, 200, &r);
    const notebook *nb = notebook_get();
    expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 0, "dx");
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 0, "dW");
    expect_tensor(jget(r.json, "db"), &nb->db, TT_NESTED, 0, 0, "db");
    http_res_free(&r);
    stop_expect_clean(d);
    free(path);
    free(body);
    free(id);
    free(layer);
    free(W);
    free(delta);
    free(dir);
    remove_dir(top);
}

static double metric(test_daemon *d, const char *name)
{
    http_res r;
    req(d, "GET", "/metrics", NULL, &r);
    expect_status(&r, 200);
    double v = prom_sum(r.body, name, (const char *const[]){NULL});
    http_res_free(&r);
    return v;
}

/* A forward's workspace leaves with the request (within a second or two); with a state dir
 * a session idle half its timeout leaves memory altogether and comes back on use. */
static void test_idle_sessions_release_memory(void **state)
{
    (void)state;
    char *dir = make_dir();
    static const char *const idle[] = {"--idle-timeout", "5", NULL};
    test_daemon *d = start_on(dir, idle);
    /* dilation 2 and stride 2 take the im2col path: its col is the workspace */
    const int C = 16, H = 24;
    size_t n = (size_t)C * H * H;
    double *xv = malloc(n * sizeof *xv);
    assert_non_null(xv);
    for (size_t i = 0; i < n; i++)
        xv[i] = (double)(i % 7) - 3;
    const int64_t xs[4] = {1, C, H, H};
    char *x = tt_json(xv, 4, xs, TT_NESTED, 64, 1);
    char *body = strf("{\"layer\":{\"in_channels\":%d,\"out_channels\":%d,\"kernel_size\":3,"
                      "\"dilation\":2,\"stride\":2,\"init\":{\"scheme\":\"normal\",\"seed\":1}},"
                      "\"x\":%s}",
                      C, C, x);
    char *ids[4];
    for (int i = 0; i < 4; i++) {
        http_res r;
        post(d, "/forward", body, 200, &r);
        ids[i] = strf("%s", r.session_id);
        http_res_free(&r);
    }
    double busy = metric(d, "convd_session_bytes");
    /* what an idle session keeps: W, b and the cached x, float64 */
    double keep = 4.0 * (C * C * 9 + C + (double)n) * 8;
    print_message("session bytes: %.0f right after, floor %.0f\n", busy, keep);
    assert_true(busy > keep * 1.2);
    double t0 = now_sec(), idle_bytes = busy;
    while (now_sec() - t0 < 4 && (idle_bytes = metric(d, "convd_session_bytes")) > keep * 1.05)
        sleep_ms(200);
    print_message("session bytes when idle: %.0f\n", idle_bytes);
    assert_true(idle_bytes >= keep && idle_bytes <= keep * 1.05);
    for (int i = 0; i < 4; i++) {
        char *path = strf("/sessions/%s", ids[i]);
        http_res r;
        req(d, "DELETE", path, NULL, &r);
        expect_status(&r, 204);
        http_res_free(&r);
        free(path);
        free(ids[i]);
    }
    assert_true(metric(d, "convd_session_bytes") == 0);

    /* sessions without a cache unload after half the 5 s timeout, and load on use */
    char *W = nb_W();
    char *layer = strf("{\"W\":%s}", W);
    char *cold = session_create(d, layer);
    double loaded = metric(d, "convd_sessions_loaded");
    t0 = now_sec();
    while (now_sec() - t0 < 5 && metric(d, "convd_sessions_loaded") >= loaded)
        sleep_ms(200);
    assert_true(metric(d, "convd_sessions_loaded") < loaded);
    forward_nb(d, cold);
    expect_get(d, cold, 200, NULL);

    stop_expect_clean(d);
    free(cold);
    free(layer);
    free(W);
    free(body);
    free(x);
    free(xv);
    remove_dir(dir);
}

/* Runs the daemon on dir (it must refuse to start) and checks that its message names the
 * file or directory and says `why` (one of "a|b"). */
static void expect_refused(const char *dir, const char *node, const char *names, const char *why)
{
    const char *args[] = {"--port", "0",           "--log-level", "warn", "--state-dir",
                          dir,      "--node-name", node,          NULL};
    char *out = NULL;
    int code = daemon_run_cli(args, NULL, 15000, &out);
    print_message("exit %d: %s", code, out ? out : "");
    assert_true(code > 0 && code < 128);
    assert_non_null(strstr(out, names));
    int found = 0;
    char *alts = strf("%s", why);
    for (char *t = strtok(alts, "|"); t; t = strtok(NULL, "|"))
        found |= strstr(out, t) != NULL;
    free(alts);
    assert_true(found);
    free(out);
}

/* A state dir with a few sessions whose W makes the file span many pages, stopped cleanly. */
static char *dir_with_sessions(void)
{
    char *dir = make_dir();
    test_daemon *d = start_on(dir, NULL);
    for (int i = 0; i < 12; i++) {
        char *body = strf("{\"in_channels\":16,\"out_channels\":16,\"kernel_size\":3,"
                          "\"init\":{\"scheme\":\"normal\",\"seed\":%d}}",
                          i);
        free(session_create(d, body));
        free(body);
    }
    stop_expect_clean(d);
    return dir;
}

static void poke(const char *file, long off, const void *bytes, size_t n)
{
    int fd = open(file, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, n, off), (ssize_t)n);
    close(fd);
}

static void test_bad_state_dirs_stop_the_daemon(void **state)
{
    (void)state;
    /* truncated */
    char *dir = dir_with_sessions();
    char *db = db_path(dir);
    struct stat sb;
    assert_int_equal(stat(db, &sb), 0);
    assert_int_equal(truncate(db, sb.st_size / 2), 0);
    expect_refused(dir, "n1", db, "malformed|damaged|integrity");
    free(db);
    remove_dir(dir);

    /* a newer schema (user_version, bytes 60..63 of the header) */
    dir = dir_with_sessions();
    db = db_path(dir);
    poke(db, 60, (const unsigned char[]){0, 0, 0, 99}, 4);
    expect_refused(dir, "n1", db, "schema version 99");
    /* another program's SQLite file (application_id, bytes 68..71) */
    poke(db, 60, (const unsigned char[]){0, 0, 0, 1}, 4);
    poke(db, 68, "ABCD", 4);
    expect_refused(dir, "n1", db, "not a convd state database");
    free(db);
    remove_dir(dir);

    /* not a database at all */
    dir = make_dir();
    db = db_path(dir);
    FILE *f = fopen(db, "w");
    assert_non_null(f);
    for (int i = 0; i < 100; i++)
        fputs("these are not the pages you are looking for\n", f);
    fclose(f);
    expect_refused(dir, "n1", db, "not a database");
    free(db);

    /* state_dir names a file */
    char *file = strf("%s/plain", dir);
    f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    expect_refused(file, "n1", file, "not a directory");
    free(file);
    remove_dir(dir);

    /* written under another node name */
    dir = dir_with_sessions();
    expect_refused(dir, "n2", "convd.db", "node_name");

    /* in use by a running daemon */
    test_daemon *d = start_on(dir, NULL);
    expect_refused(dir, "n1", "convd.lock", "another convd");
    stop_expect_clean(d);
    remove_dir(dir);
}

/* No permission: as a user who cannot read the directory. As root (CI), the daemon runs as
 * nobody through setpriv (util-linux), from a copy of the binary nobody can execute. */
static void test_state_dir_without_permission(void **state)
{
    (void)state;
    char *dir = dir_with_sessions();
    assert_int_equal(chmod(dir, 0700), 0);
    if (geteuid() != 0) {
        assert_int_equal(chmod(dir, 0), 0);
        expect_refused(dir, "n1", dir, "permission|Permission");
        assert_int_equal(chmod(dir, 0700), 0);
        remove_dir(dir);
        return;
    }
    if (system("command -v setpriv >/dev/null 2>&1") != 0) {
        remove_dir(dir);
        skip();
    }
    char *bin_dir = make_dir();
    assert_int_equal(chmod(bin_dir, 0755), 0);
    char *cmd = strf("cp '%s' '%s/convd' && chmod 755 '%s/convd'", daemon_bin(), bin_dir, bin_dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *wrapper = strf("%s/as-nobody", bin_dir);
    FILE *f = fopen(wrapper, "w");
    assert_non_null(f);
    fprintf(
        f, "#!/bin/sh\nexec setpriv --reuid=65534 --regid=65534 --clear-groups '%s/convd' \"$@\"\n",
        bin_dir);
    fclose(f);
    assert_int_equal(chmod(wrapper, 0755), 0);
    char *saved = strf("%s", daemon_bin());
    setenv("CONVD_BIN", wrapper, 1);
    expect_refused(dir, "n1", dir, "permission|Permission");
    setenv("CONVD_BIN", saved, 1);
    free(saved);
    free(wrapper);
    remove_dir(bin_dir);
    remove_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acknowledged_changes_survive_kill9),
        cmocka_unit_test(test_step_in_flight_is_whole),
        cmocka_unit_test(test_idle_clock_runs_across_restart),
        cmocka_unit_test(test_persist_inputs_keeps_the_cache),
        cmocka_unit_test(test_idle_sessions_release_memory),
        cmocka_unit_test(test_bad_state_dirs_stop_the_daemon),
        cmocka_unit_test(test_state_dir_without_permission),
    };
    return ITEST_MAIN(tests, NULL, NULL);
}
