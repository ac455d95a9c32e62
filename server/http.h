/*
 * http.h — the MHD glue: starts libmicrohttpd with a socket thread pool, runs the access
 * handler protocol (framing, route, drain, auth, 415 and 413 checks up front; the body
 * appended under max_body_bytes; dispatch to api.c on a work pool), sends answers, and records
 * each request (metrics, one log line) when MHD reports it complete. Shutdown is staged
 * so main can drain: begin_drain → wait for http_inflight() == 0 → http_stop.
 */
#ifndef SERVER_HTTP_H
#define SERVER_HTTP_H

#include <stdint.h>

#include "config.h"
#include "session.h"

typedef struct http_server http_server;

/* Starts serving on cfg->bind:cfg->port. cfg and st are borrowed and must outlive the server.
 * 0, or -1 with a message in err. */
int http_start(const srv_config *cfg, session_store *st, http_server **out, char *err,
               size_t err_size);

/* The address and port actually bound ("127.0.0.1", 41234), for `listening on ...`. */
const char *http_addr(const http_server *h);
uint16_t http_port(const http_server *h);

/* From now on /readyz answers 503, new work 503 shutting_down, and every answer closes its
 * connection; requests already waiting on an open connection are still served, and
 * bodies must arrive within timeout_s (conns.h). */
void http_begin_drain(http_server *h, double timeout_s);
/* Requests in flight: bodies still arriving from a client that is still connected, and
 * requests dispatched whose answer is not yet sent. /healthz, /readyz and /metrics are not
 * counted. Peeks at the upload sockets, so call it from one thread (main's drain loop). */
int http_inflight(http_server *h);
/* Periodic work for main's idle loop (every second or so): gives the heap back to the
 * system once a burst of large requests is over. */
void http_housekeeping(http_server *h);
/* Stops accepting connections (closes the listening socket); connections already open stay. */
void http_quiesce(http_server *h);
/* Stops MHD (waits for its threads) and frees h. NULL is a no-op. */
void http_stop(http_server *h);

#endif /* SERVER_HTTP_H */
