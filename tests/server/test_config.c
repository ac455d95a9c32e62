/*
 * test_config.c — settings: built-in defaults, the strict `key = value` file parser (errors
 * name file:line), precedence flag > environment > file > default, the API key sources,
 * the --help/--version/--healthcheck actions, and value validation.
 * Each test runs in a fresh temporary directory with every CONVD_* variable unset, so
 * neither the source tree's config/convd.conf nor the caller's environment leaks in.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../server/config.h"

static const char *const env_names[] = {
    "CONVD_BIND",           "CONVD_PORT",         "CONVD_THREADS",      "CONVD_BLAS_THREADS",
    "CONVD_MAX_BODY_BYTES", "CONVD_MAX_SESSIONS", "CONVD_IDLE_TIMEOUT", "CONVD_MAX_SESSION_BYTES",
    "CONVD_DRAIN_TIMEOUT",  "CONVD_API_KEY",      "CONVD_API_KEY_FILE", "CONVD_LOG_LEVEL",
    "CONVD_CONFIG",
};

static char olddir[1024];
static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof env_names / sizeof env_names[0]; i++)
        unsetenv(env_names[i]);
    if (!getcwd(olddir, sizeof olddir))
        return -1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/convd-test-config-XXXXXX");
    if (!mkdtemp(tmpdir) || chdir(tmpdir) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (chdir(olddir) != 0 || system(cmd) != 0)
        return -1;
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* config_load on argv (writable copies, as main gets them); url receives the probe URL. */
static int load_argv(srv_config *c, config_action *a, char *url, size_t url_n, char *err, size_t n,
                     int argc, const char *const *args)
{
    char *argv[32];
    assert_true(argc < 32);
    for (int i = 0; i < argc; i++)
        argv[i] = strdup(args[i]);
    err[0] = '\0';
    int rc = config_load(c, argc, argv, a, url, url_n, err, n);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    return rc;
}

/* config_load with a NULL-terminated list of arguments after "convd". */
static int load(srv_config *c, config_action *a, char *err, size_t n, ...)
{
    const char *args[32] = {"convd"};
    int argc = 1;
    va_list ap;
    va_start(ap, n);
    for (const char *s; (s = va_arg(ap, const char *)) != NULL && argc < 31;)
        args[argc++] = s;
    va_end(ap);
    char url[512];
    return load_argv(c, a, url, sizeof url, err, n, argc, args);
}

static void test_defaults(void **state)
{
    (void)state;
    srv_config c;
    config_action a;
    char err[512];
    assert_int_equal(load(&c, &a, err, sizeof err, NULL), 0);
    assert_int_equal(a, CONFIG_RUN);
    assert_string_equal(c.bind, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_true(c.threads >= 1); /* the CPU count, resolved */
    assert_true(c.blas_threads >= 1);
    assert_int_equal(c.max_body_bytes, 67108864);
    assert_int_equal(c.max_sessions, 1024);
    assert_int_equal(c.max_connections_per_ip, 512);
    assert_true(c.idle_timeout == 900);
    assert_int_equal(c.max_session_bytes, 1073741824);
    assert_true(c.drain_timeout == 10);
    assert_string_equal(c.api_key, "");
    assert_int_equal(c.log_level, LOG_LEVEL_INFO);
    assert_string_equal(c.config_path, "");
}

static void test_file_values(void **state)
{
    (void)state;
    write_file("a.conf", "# comment\n\n  bind = 0.0.0.0  \nport=9001 # trailing comment\n"
                         "threads = 3\nblas_threads = 2\nmax_body_bytes = 64M\n"
                         "max_sessions = 7\nmax_connections_per_ip = 0\nidle_timeout = 0.5\n"
                         "max_session_bytes = 2GiB\n"
                         "drain_timeout = 0\nlog_level = \"warn\"\n");
    srv_config c;
    config_action a;
    char err[512];
    assert_int_equal(load(&c, &a, err, sizeof err, "--config", "a.conf", NULL), 0);
    assert_string_equal(c.bind, "0.0.0.0");
    assert_int_equal(c.port, 9001);
    assert_int_equal(c.threads, 3);
    assert_int_equal(c.blas_threads, 2);
    assert_int_equal(c.max_body_bytes, 64u << 20);
    assert_int_equal(c.max_sessions, 7);
    assert_int_equal(c.max_connections_per_ip, 0);
    assert_true(c.idle_timeout == 0.5);
    assert_int_equal(c.max_session_bytes, 2ull << 30);
    assert_true(c.drain_timeout == 0);
    assert_int_equal(c.log_level, LOG_LEVEL_WARN);
    assert_string_equal(c.config_path, "a.conf");
}

static void test_default_file_in_source_tree(void **state)
{
    (void)state;
    assert_int_equal(mkdir("config", 0755), 0);
    write_file(CONFIG_DEFAULT_PATH, "port = 1234\n");
    srv_config c;
    config_action a;
    char err[512];
    assert_int_equal(load(&c, &a, err, sizeof err, NULL), 0);
    assert_int_equal(c.port, 1234);
    assert_string_equal(c.config_path, CONFIG_DEFAULT_PATH);
    /* CONVD_CONFIG and --config replace it */
    write_file("env.conf", "port = 2345\n");
    write_file("flag.conf", "port = 3456\n");
    setenv("CONVD_CONFIG", "env.conf", 1);
    assert_int_equal(load(&c, &a, err, sizeof err, NULL), 0);
    assert_int_equal(c.port, 2345);
    assert_int_equal(load(&c, &a, err, sizeof err, "--config=flag.conf", NULL), 0);
    assert_int_equal(c.port, 3456);
}

static void test_precedence(void **state)
{
    (void)state;
    write_file("p.conf", "port = 1000\nmax_sessions = 10\nlog_level = error\n");
    srv_config c;
    config_action a;
    char err[512];
    setenv("CONVD_CONFIG", "p.conf", 1);
    assert_int_equal(load(&c, &a, err, sizeof err, NULL), 0);
    assert_int_equal(c.port, 1000); /* file > default */
    assert_int_equal(c.max_sessions, 10);
    setenv("CONVD_PORT", "2000", 1);
    assert_int_equal(load(&c, &a, err, sizeof err, NULL), 0);
    assert_int_equal(c.port, 2000); /* env > file */
    assert_int_equal(c.max_sessions, 10);
    assert_int_equal(load(&c, &a, err, sizeof err, "--port", "3000", "--log-level=debug", NULL), 0);
    assert_int_equal(c.port, 3000); /* flag > env */
    assert_int_equal(c.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(c.max_sessions, 10);
    /* the last of repeated flags wins */
    assert_int_equal(load(&c, &a, err, sizeof err, "--port", "1", "--port", "2", NULL), 0);
    assert_int_equal(c.port, 2);
}

static void expect_file_error(const char *text, const char *needle)
{
    write_file("bad.conf", text);
    srv_config c;
    config_defaults(&c);
    char err[512] = "";
    assert_int_equal(config_parse_file(&c, "bad.conf", err, sizeof err), -1);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err, needle);
}

static void test_strict_file_errors(void **state)
{
    (void)state;
    expect_file_error("port = 1\nstrid = 2\n", "bad.conf:2: unknown key \"strid\"");
    expect_file_error("\n\nport = abc\n", "bad.conf:3: port must be an integer");
    expect_file_error("port = 70000\n", "bad.conf:1");
    expect_file_error("port 8080\n", "bad.conf:1: expected `key = value`");
    expect_file_error("port = 1\nport = 2\n", "bad.conf:2: key \"port\" is set twice");
    expect_file_error("max_body_bytes = 12X\n", "bad.conf:1: max-body-bytes must be a byte count");
    expect_file_error("max_body_bytes = -5\n", "bad.conf:1");
    expect_file_error("idle_timeout = 0\n", "bad.conf:1: idle-timeout");
    expect_file_error("idle_timeout = nan\n", "bad.conf:1");
    expect_file_error("log_level = loud\n", "bad.conf:1: log-level must be debug");
    expect_file_error("bind =\n", "bad.conf:1: bind must not be empty");
    expect_file_error("api_key = secret\n", "unknown key \"api_key\""); /* keys stay out of files */

    srv_config c;
    config_defaults(&c);
    char err[512];
    assert_int_equal(config_parse_file(&c, "no-such.conf", err, sizeof err), -1);
    assert_non_null(strstr(err, "no-such.conf"));
    /* a failed file load through config_load is an error too */
    config_action a;
    assert_int_equal(load(&c, &a, err, sizeof err, "--config", "bad.conf", NULL), -1);
}

static void test_flag_and_env_errors(void **state)
{
    (void)state;
    srv_config c;
    config_action a;
    char err[512];
    assert_int_equal(load(&c, &a, err, sizeof err, "--prot", "1", NULL), -1);
    assert_non_null(strstr(err, "unknown option \"--prot\""));
    assert_int_equal(load(&c, &a, err, sizeof err, "--port", NULL), -1);
    assert_non_null(strstr(err, "needs a value"));
    assert_int_equal(load(&c, &a, err, sizeof err, "--threads", "-1", NULL), -1);
    assert_non_null(strstr(err, "--threads"));
    assert_int_equal(load(&c, &a, err, sizeof err, "stray", NULL), -1);
    setenv("CONVD_MAX_SESSIONS", "0", 1);
    assert_int_equal(load(&c, &a, err, sizeof err, NULL), -1);
    assert_non_null(strstr(err, "CONVD_MAX_SESSIONS"));
    unsetenv("CONVD_MAX_SESSIONS");
    setenv("CONVD_PORT", "80x", 1);
    assert_int_equal(load(&c, &a, err, sizeof err, NULL), -1);
    assert_non_null(strstr(err, "CONVD_PORT"));
    /* a valid flag does not excuse a bad variable: every source is checked */
    assert_int_equal(load(&c, &a, err, sizeof err, "--port", "1", NULL), -1);
}

static void test_api_key_sources(void **state)
{
    (void)state;
    srv_config c;
    config_action a;
    char err[512];
    write_file("key.txt", "s3cret-from-file\n");
    write_file("k.conf", "api_key_file = key.txt\n");
    assert_int_equal(load(&c, &a, err, sizeof err, "--config", "k.conf", NULL), 0);
    assert_string_equal(c.api_key, "s3cret-from-file");
    setenv("CONVD_API_KEY", "from-env", 1);
    assert_int_equal(load(&c, &a, err, sizeof err, "--config", "k.conf", NULL), 0);
    assert_string_equal(c.api_key, "from-env");
    assert_int_equal(
        load(&c, &a, err, sizeof err, "--config", "k.conf", "--api-key-file", "key.txt", NULL), 0);
    assert_string_equal(c.api_key, "s3cret-from-file");
    assert_int_equal(load(&c, &a, err, sizeof err, "--api-key", "flag-key", NULL), 0);
    assert_string_equal(c.api_key, "flag-key");
    unsetenv("CONVD_API_KEY");
    write_file("empty.txt", "\n");
    assert_int_equal(load(&c, &a, err, sizeof err, "--api-key-file", "empty.txt", NULL), -1);
    assert_non_null(strstr(err, "empty.txt"));
    assert_int_equal(load(&c, &a, err, sizeof err, "--api-key-file", "missing.txt", NULL), -1);
}

static void test_actions(void **state)
{
    (void)state;
    srv_config c;
    config_action a;
    char err[512], url[512];
    assert_int_equal(load(&c, &a, err, sizeof err, "--help", NULL), 0);
    assert_int_equal(a, CONFIG_HELP);
    assert_int_equal(load(&c, &a, err, sizeof err, "--version", NULL), 0);
    assert_int_equal(a, CONFIG_VERSION);
    const char *argv1[] = {"convd", "--port", "4321", "--healthcheck"};
    assert_int_equal(load_argv(&c, &a, url, sizeof url, err, sizeof err, 4, argv1), 0);
    assert_int_equal(a, CONFIG_HEALTHCHECK);
    assert_string_equal(url, "http://127.0.0.1:4321/healthz");
    const char *argv2[] = {"convd", "--healthcheck", "http://example:1/healthz", "--bind",
                           "0.0.0.0"};
    assert_int_equal(load_argv(&c, &a, url, sizeof url, err, sizeof err, 5, argv2), 0);
    assert_string_equal(url, "http://example:1/healthz");
    const char *argv3[] = {"convd", "--bind", "::", "--healthcheck"};
    assert_int_equal(load_argv(&c, &a, url, sizeof url, err, sizeof err, 4, argv3), 0);
    assert_string_equal(url, "http://[::1]:8080/healthz");
}

static void test_usage_names_every_setting(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    config_usage(f);
    fclose(f);
    static const char *const must[] = {
        "--bind",           "--port",
        "--threads",        "--blas-threads",
        "--max-body-bytes", "--max-sessions",
        "--idle-timeout",   "--max-session-bytes",
        "--drain-timeout",  "--api-key",
        "--api-key-file",   "--log-level",
        "--config",         "--healthcheck",
        "--help",           "--version",
        "67108864",         "1073741824",
        "CONVD_BIND",       "CONVD_API_KEY_FILE",
        "CONVD_CONFIG",     "max_session_bytes",
        "SIGTERM",
    };
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++)
        if (!strstr(text, must[i]))
            fail_msg("--help does not mention %s", must[i]);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_file_in_source_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flag_and_env_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_api_key_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_actions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_names_every_setting, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
