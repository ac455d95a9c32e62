/*
 * api_openapi.c — the handler of GET /openapi.yaml. The document is the static string
 * api_openapi_yaml (generated from docs/openapi.yaml by the Makefile); each answer copies
 * it into the request's own buffer, which http.c sends and frees like any other answer.
 */
#include "api_openapi.h"

int api_openapi(const api_ctx *ctx, api_req *r)
{
    (void)ctx;
    if (buf_append(&r->out, api_openapi_yaml, api_openapi_yaml_len) < 0)
        return apierr_set(&r->err, APIERR_INTERNAL,
                          "out of memory copying the %zu-byte OpenAPI document; retry later",
                          api_openapi_yaml_len);
    r->content_type = "application/yaml";
    r->status = 200;
    return 0;
}
