/*
 * test_edge_tls.c — HTTPS, issue 13 item 6 (api.md §8.3). A self-signed certificate for
 * 127.0.0.1 is made at test time with the openssl command; the daemon serves it with
 * --tls-cert/--tls-key, and the notebook flow runs over https with that certificate as the
 * only trusted one, the API key on. Plain HTTP and garbage sent to the TLS port get no
 * answer and leave it serving. A certificate without its key, or an unreadable file,
 * stops the daemon at start with a message naming the setting.
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], cert[128], key[128], base[64];
static test_daemon *d;
static const char *const auth[] = {"Authorization: Bearer tls-test-key", NULL};

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/convd-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    char *cmd = strf("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                     "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s 2>/dev/null",
                     key, cert);
    int rc = system(cmd);
    free(cmd);
    if (rc != 0) {
        fprintf(stderr,
                "openssl could not make a certificate (scripts/deps.sh test installs it)\n");
        return -1;
    }
    const char *const args[] = {"--tls-cert", cert,           "--tls-key", key,
                                "--api-key",  "tls-test-key", NULL};
    d = daemon_start(args, NULL);
    if (!d)
        return -1;
    snprintf(base, sizeof base, "https://127.0.0.1:%d", daemon_port(d));
    http_set_cainfo(cert);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    http_set_cainfo(NULL);
    daemon_kill(d);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    return 0;
}

static void https(const char *method, const char *path, const char *body, http_res *r)
{
    if (http_do(NULL, base, method, path, body, body ? strlen(body) : 0, auth, r) != 0)
        fail_msg("%s %s over https: no answer (curl error %d)", method, path, r->curl_rc);
}

static void test_notebook_over_https(void **state)
{
    (void)state;
    const notebook *nb = notebook_get();
    char *W = tt_json(nb->W.data, nb->W.rank, nb->W.shape, TT_NESTED, 64, 1);
    char *x = tt_json(nb->x.data, nb->x.rank, nb->x.shape, TT_NESTED, 64, 1);
    char *dl = tt_json(nb->delta.data, nb->delta.rank, nb->delta.shape, TT_NESTED, 64, 1);
    char *create = strf("{\"W\":%s}", W);
    http_res r;
    https("POST", "/sessions", create, &r);
    expect_status(&r, 201);
    char *id = strdup(r.session_id);
    http_res_free(&r);
    char *fwd = strf("{\"session\":\"%s\",\"x\":%s}", id, x);
    https("POST", "/forward", fwd, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "y"), &nb->y, TT_NESTED, 0, 1e-9, "y over https");
    http_res_free(&r);
    char *bwd = strf("{\"session\":\"%s\",\"delta\":%s}", id, dl);
    https("POST", "/backward", bwd, &r);
    expect_status(&r, 200);
    expect_tensor(jget(r.json, "dx"), &nb->dx, TT_NESTED, 0, 1e-9, "dx over https");
    expect_tensor(jget(r.json, "dW"), &nb->dW, TT_NESTED, 0, 1e-9, "dW over https");
    expect_tensor(jget(r.json, "db"), &nb->db, TT_NESTED, 0, 1e-9, "db over https");
    http_res_free(&r);
    /* the key is still required */
    http_do(NULL, base, "GET", "/", NULL, 0, NULL, &r);
    expect_error(&r, 401, "unauthorized", NULL);
    http_res_free(&r);
    free(W);
    free(x);
    free(dl);
    free(create);
    free(fwd);
    free(bwd);
    free(id);
}

static void test_plain_and_garbage_leave_it_serving(void **state)
{
    (void)state;
    http_res r;
    char *plain = strf("http://127.0.0.1:%d", daemon_port(d));
    int rc = http_do(NULL, plain, "GET", "/healthz", NULL, 0, NULL, &r);
    print_message("plain HTTP to the TLS port: rc %d, status %ld\n", rc, r.status);
    assert_true(r.status != 200);
    http_res_free(&r);
    free(plain);
    static const char garbage[] = "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00GARBAGE\r\n\r\n\xff\xfe";
    for (int i = 0; i < 3; i++) {
        int fd = raw_connect(daemon_port(d));
        assert_true(fd >= 0);
        raw_send(fd, garbage + i, sizeof garbage - 1 - (size_t)i);
        assert_int_equal(raw_read_response(fd, 2000, NULL), -1);
        close(fd);
    }
    https("GET", "/healthz", NULL, &r);
    expect_status(&r, 200);
    http_res_free(&r);
}

static void test_bad_tls_settings_stop_at_start(void **state)
{
    (void)state;
    const char *const only_cert[] = {"--tls-cert", cert, NULL};
    const char *const missing[] = {"--tls-cert", "/nonexistent/cert.pem", "--tls-key", key, NULL};
    const char *const swapped[] = {"--tls-cert", key, "--tls-key",    cert,
                                   "--port",     "0", "--state-dir=", NULL};
    char *out = NULL;
    assert_int_equal(daemon_run_cli(only_cert, NULL, 5000, &out), 2);
    assert_non_null(strstr(out, "tls_key"));
    free(out);
    assert_int_equal(daemon_run_cli(missing, NULL, 5000, &out), 1);
    assert_non_null(strstr(out, "/nonexistent/cert.pem"));
    free(out);
    assert_int_equal(daemon_run_cli(swapped, NULL, 5000, &out), 1);
    assert_non_null(strstr(out, "tls_cert"));
    free(out);
}

static void test_exits_cleanly(void **state)
{
    (void)state;
    stop_expect_clean(d);
    d = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notebook_over_https),
        cmocka_unit_test(test_plain_and_garbage_leave_it_serving),
        cmocka_unit_test(test_bad_tls_settings_stop_at_start),
        cmocka_unit_test(test_exits_cleanly),
    };
    return ITEST_MAIN(tests, setup, teardown);
}
