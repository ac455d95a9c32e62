/*
 * listenaddr.h — the settings' bind (an IPv4 or IPv6 literal, "[v6]", or a host name) and
 * port as a socket address for libmicrohttpd. Nothing here allocates.
 */
#ifndef SERVER_LISTENADDR_H
#define SERVER_LISTENADDR_H

#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

/* Fills *ss (length *len; *v6 = 1 for IPv6) from cfg->bind and cfg->port. 0, or -1 with a
 * message naming the bind value in err. */
int listenaddr_resolve(const srv_config *cfg, struct sockaddr_storage *ss, socklen_t *len, int *v6,
                       char *err, size_t n);

#endif /* SERVER_LISTENADDR_H */
