/*
 * api_misc.c — the endpoints that touch no layer: GET / (name, version, endpoints),
 * /healthz, /readyz (503 while draining) and /metrics (Prometheus text).
 */
#include "api_util.h"

int api_root(const api_ctx *ctx, api_req *r)
{
    (void)ctx;
    buf_puts(&r->out, "{\"name\":\"convd\",\"version\":\"" CVD_VERSION "\",\"endpoints\":["
                      "\"GET /\",\"GET /healthz\",\"GET /readyz\",\"GET /metrics\","
                      "\"GET /openapi.yaml\","
                      "\"POST /sessions\",\"GET /sessions\",\"GET /sessions/{id}\","
                      "\"PATCH /sessions/{id}\",\"DELETE /sessions/{id}\","
                      "\"POST /sessions/{id}/forward\",\"POST /sessions/{id}/backward\","
                      "\"POST /forward\",\"POST /backward\"]}");
    r->status = 200;
    return 0;
}

int api_healthz(const api_ctx *ctx, api_req *r)
{
    (void)ctx;
    buf_puts(&r->out, "{\"status\":\"ok\"}");
    r->status = 200;
    return 0;
}

int api_readyz(const api_ctx *ctx, api_req *r)
{
    int draining = ctx->draining && atomic_load(ctx->draining);
    buf_puts(&r->out, draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ready\"}");
    r->status = draining ? 503 : 200;
    return 0;
}

int api_metrics(const api_ctx *ctx, api_req *r)
{
    metrics_sessions ms;
    session_store_stats(ctx->store, &ms);
    metrics_render(&r->out, &ms);
    r->content_type = "text/plain; version=0.0.4; charset=utf-8";
    r->status = 200;
    return 0;
}
