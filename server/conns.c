/*
 * conns.c — the connection registry and its reaper (conns.h). One mutex guards the list
 * and every record; the reaper takes it every REAP_INTERVAL_S, so a deadline is enforced
 * within that much of its time. A socket is shut down, never closed, here: libmicrohttpd
 * owns it and notices the shutdown as the peer going away.
 */
#include "conns.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "log.h"

#define REAP_INTERVAL_S 0.1
/* A request libmicrohttpd had already read from an idle connection when the drain began is
 * in its buffer, not in the socket: such a connection is given this long to show it. */
#define DRAIN_GRACE_S 0.5

enum phase { WAIT, BODY, BUSY };

struct conn {
    conn *prev, *next;
    int fd;
    enum phase phase;
    double since;       /* when the phase began */
    double deadline;    /* WAIT: when the headers must be complete */
    long long expected; /* BODY: declared length, -1 when chunked */
    uint64_t got;       /* BODY: bytes so far */
    int admitted;       /* had a request waiting or under way when the drain began */
    int idle_at_drain;  /* was idle with nothing in its socket when the drain began */
    int owed;           /* admitted, and its request not yet answered */
    int closing;        /* shut down by the reaper */
};

struct conns {
    conns_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t reaper;
    int stop;
    conn *head;
    int draining;
    double drain_deadline;
    double grace_end; /* DRAIN_GRACE_S after the drain began */
};

/* Bytes the peer has sent that nobody has read yet. */
static int pending(int fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* Whether the peer is still there: EOF or a reset means gone; data or EAGAIN, there. */
static int present(int fd)
{
    char ch;
    ssize_t r = recv(fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    return r > 0 || (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

static void kill_conn(conn *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = 1;
    log_info("closing a connection: %s", why);
    shutdown(c->fd, SHUT_RDWR);
}

/* A body that has been arriving for header_timeout must average body_min_rate. */
static int body_too_slow(const conns *cs, const conn *c, double now)
{
    double t = now - c->since;
    return cs->o.body_min_rate && t >= cs->o.header_timeout &&
           (double)c->got < (double)cs->o.body_min_rate * t;
}

/* While draining: a body arriving slower than body_min_rate (from the start of its body,
 * no grace) whose rest, at that pace, would not arrive before the drain deadline. */
static int body_too_late(const conns *cs, const conn *c, double now)
{
    double t = now - c->since;
    if (!cs->draining || !cs->o.body_min_rate || t <= 0)
        return 0;
    double rate = (double)c->got / t;
    if (rate >= (double)cs->o.body_min_rate)
        return 0;
    if (c->expected < 0 || rate <= 0)
        return 1;
    return ((double)c->expected - (double)c->got) / rate > cs->drain_deadline - now;
}

static void reap(conns *cs, double now)
{
    for (conn *c = cs->head; c; c = c->next) {
        if (c->phase == WAIT && now > c->deadline)
            kill_conn(c, "its request headers did not arrive within header_timeout");
        else if (c->phase == BODY && body_too_slow(cs, c, now))
            kill_conn(c, "its body arrives slower than body_min_rate");
        else if (c->phase == BODY && body_too_late(cs, c, now))
            kill_conn(c, "its body cannot arrive before the drain timeout");
        else if (c->phase == WAIT && c->idle_at_drain && now > cs->grace_end)
            kill_conn(c, "draining, and it had no request under way");
    }
}

static void *reaper_main(void *arg)
{
    conns *cs = arg;
    pthread_mutex_lock(&cs->mu);
    while (!cs->stop) {
        reap(cs, clock_mono());
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)(REAP_INTERVAL_S * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cs->cv, &cs->mu, &ts);
    }
    pthread_mutex_unlock(&cs->mu);
    return NULL;
}

int conns_new(const conns_opts *o, conns **out)
{
    *out = NULL;
    conns *cs = calloc(1, sizeof *cs);
    if (!cs)
        return -1;
    cs->o = *o;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&cs->mu, NULL);
    pthread_cond_init(&cs->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&cs->reaper, NULL, reaper_main, cs) != 0) {
        pthread_cond_destroy(&cs->cv);
        pthread_mutex_destroy(&cs->mu);
        free(cs);
        return -1;
    }
    *out = cs;
    return 0;
}

void conns_free(conns *cs)
{
    if (!cs)
        return;
    pthread_mutex_lock(&cs->mu);
    cs->stop = 1;
    pthread_cond_signal(&cs->cv);
    pthread_mutex_unlock(&cs->mu);
    pthread_join(cs->reaper, NULL);
    while (cs->head) {
        conn *c = cs->head;
        cs->head = c->next;
        free(c);
    }
    pthread_cond_destroy(&cs->cv);
    pthread_mutex_destroy(&cs->mu);
    free(cs);
}

conn *conns_open(conns *cs, int fd)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->phase = WAIT;
    c->since = clock_mono();
    c->deadline = c->since + cs->o.header_timeout;
    pthread_mutex_lock(&cs->mu);
    c->next = cs->head;
    if (cs->head)
        cs->head->prev = c;
    cs->head = c;
    pthread_mutex_unlock(&cs->mu);
    return c;
}

void conns_close(conns *cs, conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&cs->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&cs->mu);
    free(c);
}

int conns_request(conns *cs, conn *c, int body, long long content_length)
{
    if (!c)
        return 1;
    pthread_mutex_lock(&cs->mu);
    c->phase = body ? BODY : BUSY;
    c->since = clock_mono();
    c->expected = content_length;
    c->got = 0;
    if (c->idle_at_drain && clock_mono() <= cs->grace_end)
        c->admitted = c->owed = 1;
    int ok = !cs->draining || c->admitted;
    pthread_mutex_unlock(&cs->mu);
    return ok;
}

void conns_body(conns *cs, conn *c, size_t n)
{
    if (!c)
        return;
    pthread_mutex_lock(&cs->mu);
    c->got += n;
    pthread_mutex_unlock(&cs->mu);
}

void conns_busy(conns *cs, conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&cs->mu);
    c->phase = BUSY;
    pthread_mutex_unlock(&cs->mu);
}

void conns_answered(conns *cs, conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&cs->mu);
    c->phase = WAIT;
    c->owed = 0;
    c->since = clock_mono();
    double t = cs->o.connection_timeout > cs->o.header_timeout ? cs->o.connection_timeout
                                                               : cs->o.header_timeout;
    c->deadline = c->since + t;
    pthread_mutex_unlock(&cs->mu);
}

int conns_owed(conns *cs)
{
    int n = 0;
    pthread_mutex_lock(&cs->mu);
    const double now = clock_mono();
    for (const conn *c = cs->head; c; c = c->next) {
        if (c->closing)
            continue;
        if (c->phase == BODY)
            n += present(c->fd);
        else
            n += c->owed || (c->idle_at_drain && now <= cs->grace_end);
    }
    pthread_mutex_unlock(&cs->mu);
    return n;
}

void conns_begin_drain(conns *cs, double deadline)
{
    pthread_mutex_lock(&cs->mu);
    cs->draining = 1;
    cs->drain_deadline = deadline;
    cs->grace_end = clock_mono() + DRAIN_GRACE_S;
    for (conn *c = cs->head; c; c = c->next) {
        c->admitted = c->owed = c->phase != WAIT || pending(c->fd);
        c->idle_at_drain = !c->admitted;
    }
    reap(cs, clock_mono());
    pthread_mutex_unlock(&cs->mu);
}
