/*
 * test_healthcheck.c — the health probe's status-line parser: well-formed lines give their
 * code; anything else (no "HTTP/", a missing version part, a code that is not exactly three
 * digits, such as one too long for an int) is -1 rather than a garbage or overflowed code.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../server/healthcheck.h"

static void test_status_line_codes(void **state)
{
    (void)state;
    assert_int_equal(healthcheck_status("HTTP/1.1 200 OK\r\n"), 200);
    assert_int_equal(healthcheck_status("HTTP/1.0 503 Service Unavailable\r\n"), 503);
    assert_int_equal(healthcheck_status("HTTP/1.1 404"), 404);
    assert_int_equal(healthcheck_status("HTTP/10.12 101 Switching\r\n"), 101);
}

static void test_status_line_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "HTTP/",
        "HTTP/1.1",
        "HTTP/1.1 ",
        "HTTP/1.1 20 OK",
        "HTTP/1.1 2000 OK",
        "HTTP/1.1 99999999999999999999 OK", /* sscanf's %d overflowed here (undefined) */
        "HTTP/1.1 -200 OK",
        "HTTP/1.1 +200 OK",
        "HTTP/1 200 OK",
        "HTTP/.1 200 OK",
        "HTTP/1. 200 OK",
        "HTTP/1.1 abc",
        "http/1.1 200 OK",
        "SSH-2.0-OpenSSH_9.2\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (healthcheck_status(bad[i]) != -1)
            fail_msg("\"%s\" gave %d, want -1", bad[i], healthcheck_status(bad[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_line_codes),
        cmocka_unit_test(test_status_line_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
