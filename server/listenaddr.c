/*
 * listenaddr.c — the listening address of listenaddr.h: a bracketed or bare IPv6 literal,
 * an IPv4 literal, else the first address getaddrinfo gives for the host name.
 */
#include "listenaddr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

int listenaddr_resolve(const srv_config *cfg, struct sockaddr_storage *ss, socklen_t *len, int *v6,
                       char *err, size_t n)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    const char *host = cfg->bind;
    char tmp[CONFIG_STR_MAX];
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
        snprintf(tmp, sizeof tmp, "%.*s", (int)(hl - 2), host + 1);
        host = tmp;
    }
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)cfg->port);
        *len = sizeof *a4;
        *v6 = 0;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)cfg->port);
        *len = sizeof *a6;
        *v6 = 1;
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, n, "bind: cannot resolve \"%s\": %s", cfg->bind, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    if (*v6)
        a6->sin6_port = htons((uint16_t)cfg->port);
    else
        a4->sin_port = htons((uint16_t)cfg->port);
    return 0;
}
