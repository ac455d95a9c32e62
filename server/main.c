/*
 * main.c — the convd process: settings → logging → session store → HTTP server, then
 * wait for SIGTERM/SIGINT on a self-pipe (the handler only writes a byte: OpenBLAS starts
 * threads before main runs, so a signal may land on any thread and sigwait with a blocked
 * mask cannot be relied on). A signal starts
 * draining: /readyz turns 503, new work is refused, in-flight requests get up to
 * drain_timeout to finish; then the listener closes, MHD stops, everything is freed and the
 * process exits 0. A second signal while draining exits at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/cvd.h"
#include "budget.h"
#include "clock.h"
#include "config.h"
#include "healthcheck.h"
#include "http.h"
#include "log.h"
#include "session.h"
#include "state.h"

static int sig_fds[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(sig_fds[1], &b, 1);
    (void)w; /* a full pipe already holds a pending signal */
    errno = saved;
}

/* Waits up to timeout_ms (-1: forever) for a signal; returns it, or 0 on timeout. */
static int wait_signal(int timeout_ms)
{
    struct pollfd p = {.fd = sig_fds[0], .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0)
        return 0;
    unsigned char b;
    return read(sig_fds[0], &b, 1) == 1 ? b : 0;
}

static int install_signals(void)
{
    if (pipe2(sig_fds, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Waits for in-flight requests, up to drain_timeout. 0 when all finished. */
static int drain(http_server *h, double timeout)
{
    double deadline = clock_mono() + timeout;
    while (http_inflight(h) > 0) {
        if (deadline - clock_mono() <= 0)
            return -1;
        int sig = wait_signal(10);
        if (sig > 0) {
            log_warn("signal %d while draining: exiting now with %d requests in flight", sig,
                     http_inflight(h));
            return -1;
        }
    }
    return 0;
}

/* A large request allocates and frees blocks of several MB (the body, tensors, the
 * answer). glibc's defaults serve them with fresh mmaps, or trim the heap after each
 * free, and every request then pays a page fault per 4 KiB it touches: measured on the
 * 8x64x56x56 base64 pair, 5,300 faults and +10 ms a request in some daemon runs, 10-80
 * in others. Fixed thresholds keep blocks up to 32 MiB in the heap and leave up to 128
 * MiB free at its top for the next request (the daemon's memory stays at its high-water
 * mark instead of returning to the OS between requests). GLIBC_TUNABLES, when set, wins. */
static void keep_large_blocks(void)
{
    if (getenv("GLIBC_TUNABLES"))
        return;
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
}

int main(int argc, char **argv)
{
    srv_config cfg;
    config_action action;
    char url[1024], err[1024];
    if (config_load(&cfg, argc, argv, &action, url, sizeof url, err, sizeof err) != 0) {
        fprintf(stderr, "convd: %s\n", err);
        return 2;
    }
    switch (action) {
    case CONFIG_HELP:
        config_usage(stdout);
        return 0;
    case CONFIG_VERSION:
        printf("convd %s\n", CVD_VERSION);
        return 0;
    case CONFIG_HEALTHCHECK: {
        int status = healthcheck_get(url, 5.0, err, sizeof err);
        if (status != 200) {
            if (status < 0)
                fprintf(stderr, "convd: healthcheck: %s\n", err);
            else
                fprintf(stderr, "convd: healthcheck: %s answered %d\n", url, status);
            return 1;
        }
        return 0;
    }
    case CONFIG_RUN:
        break;
    }

    keep_large_blocks();
    if (!cfg.max_memory_bytes)
        cfg.max_memory_bytes = budget_default_limit();
    budget_set_limit(cfg.max_memory_bytes);
    log_set_level(cfg.log_level);
    log_info("convd %s starting", CVD_VERSION);
    config_log(&cfg);
    cvd_set_num_threads(cfg.blas_threads);

    if (install_signals() != 0) {
        log_error("cannot install signal handlers: %s", strerror(errno));
        return 1;
    }

    /* A state dir that cannot be used stops the daemon here: starting empty would look
     * like every session had been lost. */
    state_db *db = NULL;
    if (cfg.state_dir[0] && state_open(cfg.state_dir, &db, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    session_opts so;
    session_opts_default(&so, cfg.max_sessions, cfg.idle_timeout);
    so.node_name = cfg.node_name;
    so.db = db;
    so.persist_inputs = cfg.persist_inputs;
    session_store *store;
    if (session_store_new(&so, &store, err, sizeof err) != 0) {
        log_error("%s", err);
        state_close(db);
        return 1;
    }
    http_server *h;
    if (http_start(&cfg, store, &h, err, sizeof err) != 0) {
        log_error("%s", err);
        session_store_free(store);
        state_close(db);
        return 1;
    }
    /* Tests and scripts wait for this exact line. */
    if (strchr(http_addr(h), ':'))
        fprintf(stderr, "listening on [%s]:%u\n", http_addr(h), (unsigned)http_port(h));
    else
        fprintf(stderr, "listening on %s:%u\n", http_addr(h), (unsigned)http_port(h));
    fflush(stderr);

    int sig;
    while ((sig = wait_signal(500)) == 0)
        http_housekeeping(h);
    log_info("signal %d: draining (up to %g s for %d requests in flight)", sig, cfg.drain_timeout,
             http_inflight(h));
    http_begin_drain(h, cfg.drain_timeout);
    if (drain(h, cfg.drain_timeout) != 0) {
        /* Workers are still inside requests: MHD_stop_daemon would wait for them. */
        log_warn("drain timeout: exiting with %d requests unfinished", http_inflight(h));
        session_store_flush(store);
        _exit(0);
    }
    http_quiesce(h);
    http_stop(h);
    session_store_free(store);
    state_close(db);
    log_info("stopped");
    return 0;
}
