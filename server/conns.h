/*
 * conns.h — the open connections and their deadlines (api.md §8.3), so slow clients cannot
 * hold the daemon. http.c reports each connection's life: opened (accept), a request's
 * headers complete, its body bytes, handed to compute, answered, closed. A reaper thread
 * closes (shutdown(2), which libmicrohttpd then sees as the peer leaving) every connection
 * that
 *   - has not completed a request's headers within header_timeout of opening, or within
 *     max(connection_timeout, header_timeout) of its previous answer;
 *   - sends a body slower than body_min_rate on average once the body has been arriving
 *     for header_timeout seconds;
 *   - while draining: waits for a request it has not started, or sends a body slower than
 *     body_min_rate whose rest, at that pace, would arrive after the drain deadline.
 * Connections computing or receiving their answer have no deadline here (libmicrohttpd's
 * connection_timeout covers a client that stops reading).
 *
 * The registry owns its conn records; a conn lives from conns_open to conns_close, which
 * libmicrohttpd calls before it closes the socket, so the reaper never shuts down a socket
 * number that has been reused. Every function is thread-safe.
 */
#ifndef SERVER_CONNS_H
#define SERVER_CONNS_H

#include <stddef.h>
#include <stdint.h>

typedef struct conns conns;
typedef struct conn conn;

typedef struct conns_opts {
    double header_timeout;     /* s */
    double connection_timeout; /* s */
    uint64_t body_min_rate;    /* bytes/s; 0 = no minimum */
} conns_opts;

/* Starts the registry and its reaper thread. 0, or -1 (out of memory, no thread). */
int conns_new(const conns_opts *o, conns **out);
/* Stops the reaper and frees every record (call after the HTTP server has stopped). */
void conns_free(conns *cs);

/* A connection was accepted on socket fd. NULL when out of memory (it then has no
 * deadlines of ours; libmicrohttpd's own timeout still applies). */
conn *conns_open(conns *cs, int fd);
void conns_close(conns *cs, conn *c);

/* A request's headers are complete. body: a body follows, of content_length bytes
 * (-1: unknown, chunked). Returns whether, while draining, this request may still be
 * served (its connection had it waiting when the drain began); 1 when not draining. */
int conns_request(conns *cs, conn *c, int body, long long content_length);
/* n more body bytes arrived. */
void conns_body(conns *cs, conn *c, size_t n);
/* The request is complete (or refused): no deadline until it is answered. */
void conns_busy(conns *cs, conn *c);
/* The answer was sent: the connection waits for its next request. */
void conns_answered(conns *cs, conn *c);

/* Connections the daemon still owes an answer: a body still arriving from a peer that is
 * still there, and while draining, each admitted request not yet answered (counting the
 * idle connections' grace). */
int conns_owed(conns *cs);

/* Shutdown has begun; bodies must be complete by deadline (CLOCK_MONOTONIC seconds).
 * Admits each connection with a request under way or waiting in its socket; the idle
 * ones are closed unless a request (read before the drain) shows within half a second. */
void conns_begin_drain(conns *cs, double deadline);

#endif /* SERVER_CONNS_H */
