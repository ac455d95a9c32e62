/*
 * front.h — talking to convd through a router (deploy/nginx) for the cluster tests:
 * requests to a front URL with the session id in X-Session-Id, and the node part of a
 * routable id (NODE.<32 hex>, api.md §8.2).
 * Ownership: as client.h; nothing here allocates beyond the http_res.
 */
#ifndef ITEST_FRONT_H
#define ITEST_FRONT_H

#include <stddef.h>

#include "client.h"

/* method path on base, sid (may be NULL) in X-Session-Id, body may be NULL. Fails the
 * test when no HTTP answer arrives. */
void front_do(const char *base, const char *method, const char *path, const char *body,
              const char *sid, http_res *r);

/* Copies the node of id into name (n bytes); fails the test unless id is
 * NODE.<32 lowercase hex> with NODE in [a-z0-9-]. */
void front_id_node(const char *id, char *name, size_t n);

#endif /* ITEST_FRONT_H */
