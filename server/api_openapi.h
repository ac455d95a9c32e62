/*
 * api_openapi.h — GET /openapi.yaml: the contract as OpenAPI 3.1 (docs/openapi.yaml),
 * embedded in the binary at build time (scripts/embed-text.sh), so the daemon serves the
 * description of exactly the API it was built with.
 */
#ifndef SERVER_API_OPENAPI_H
#define SERVER_API_OPENAPI_H

#include <stddef.h>

#include "api.h"

/* docs/openapi.yaml, NUL-terminated; static storage, never freed. */
extern const char api_openapi_yaml[];
extern const size_t api_openapi_yaml_len;

int api_openapi(const api_ctx *ctx, api_req *r);

#endif /* SERVER_API_OPENAPI_H */
