/*
 * healthcheck.h — `convd --healthcheck [URL]`: one plain-socket HTTP/1.0 GET, so a
 * container health check needs neither curl nor libcurl in the image.
 */
#ifndef SERVER_HEALTHCHECK_H
#define SERVER_HEALTHCHECK_H

#include <stddef.h>

/* GETs url (http://host[:port]/path; host may be [IPv6]) with a timeout of timeout_s
 * seconds. Returns the HTTP status (200 = healthy), or -1 with a message in err. */
int healthcheck_get(const char *url, double timeout_s, char *err, size_t err_size);

/* The status code of the HTTP status line resp starts with ("HTTP/1.1 200 OK" → 200), or
 * -1 when resp does not start with one. */
int healthcheck_status(const char *resp);

#endif /* SERVER_HEALTHCHECK_H */
