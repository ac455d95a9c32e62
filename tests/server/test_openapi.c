/*
 * test_openapi.c — docs/openapi.yaml keeps up with the daemon: every route of the router
 * (method and path) is an operation of the document, every error code of apierr.h is in
 * its Error schema, and GET /openapi.yaml answers with exactly the embedded document.
 * The document checked is the one compiled into the server library, i.e. the one served.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/api_openapi.h"
#include "../../server/router.h"

/* The text of path's entry under `paths:` (up to the next path or top-level key), or NULL. */
static const char *path_block(const char *doc, const char *path, size_t *len)
{
    char key[160];
    snprintf(key, sizeof key, "\n  %s:\n", path);
    const char *at = strstr(doc, key);
    if (!at)
        return NULL;
    const char *end = at + strlen(key);
    while (*end) {
        const char *nl = strchr(end, '\n');
        if (!nl)
            break;
        /* a line indented by fewer than 4 spaces ends the block */
        if (nl[1] && !(nl[1] == ' ' && nl[2] == ' ' && nl[3] == ' ' && nl[4] == ' '))
            break;
        end = nl + 1;
    }
    *len = (size_t)(end - at);
    return at;
}

static void test_every_route_is_documented(void **state)
{
    (void)state;
    assert_true(router_count() > 0);
    for (size_t i = 0; i < router_count(); i++) {
        const char *method;
        char path[128], op[40];
        assert_int_equal(router_route(i, &method, path, sizeof path), 0);
        size_t len = 0;
        const char *block = path_block(api_openapi_yaml, path, &len);
        if (!block)
            fail_msg("docs/openapi.yaml has no path \"%s\" (route %s %s)", path, method, path);
        /* the operation is a key indented by 4 under its path: "\n    get:" */
        int n = snprintf(op, sizeof op, "\n    %s:", method);
        for (int k = 5; k < n - 1; k++)
            op[k] = (char)tolower((unsigned char)op[k]);
        char *text = strndup(block, len);
        assert_non_null(text);
        int found = strstr(text, op) != NULL;
        free(text);
        if (!found)
            fail_msg("docs/openapi.yaml documents %s but not its %s operation", path, method);
    }
}

/* Each code is an item of the Error schema's enum, its status in a comment beside it:
 * "- not_found   # 404". */
static void test_every_error_code_is_documented(void **state)
{
    (void)state;
    for (int c = APIERR_NONE + 1; c < APIERR_COUNT_; c++) {
        const char *name = apierr_name((apierr_code)c);
        char item[64], status[16];
        snprintf(item, sizeof item, "- %s ", name);
        snprintf(status, sizeof status, "# %d\n", apierr_status((apierr_code)c));
        const char *at = strstr(api_openapi_yaml, item);
        if (!at)
            fail_msg("docs/openapi.yaml's Error schema lacks the code %s", name);
        const char *eol = strchr(at, '\n');
        const char *st = strstr(at, status);
        if (!eol || st != eol - strlen(status) + 1)
            fail_msg("docs/openapi.yaml's Error schema gives %s no \"%.5s\" status comment", name,
                     status);
    }
}

static void test_served_document_is_the_embedded_one(void **state)
{
    (void)state;
    route_match m;
    assert_int_equal(router_match("GET", "/openapi.yaml", &m), ROUTE_OK);
    assert_ptr_equal(m.handler, api_openapi);
    assert_int_equal(m.ep, METRICS_EP_OPENAPI);
    api_req r;
    memset(&r, 0, sizeof r);
    buf_init(&r.out);
    api_ctx ctx = {0};
    assert_int_equal(m.handler(&ctx, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/yaml");
    assert_int_equal(r.out.len, api_openapi_yaml_len);
    assert_memory_equal(r.out.data, api_openapi_yaml, api_openapi_yaml_len);
    assert_int_equal(strncmp(r.out.data, "openapi: 3.1.0\n", 15), 0);
    buf_free(&r.out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_is_documented),
        cmocka_unit_test(test_every_error_code_is_documented),
        cmocka_unit_test(test_served_document_is_the_embedded_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
