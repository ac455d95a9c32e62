/*
 * bench_loopback.c — what moving the big base64 request and its answer over loopback TCP
 * costs on this machine, with no HTTP, JSON or codec at all: the floor under the HTTP
 * overhead that bench/http.sh prints for the c_resnet_mid pair.
 *
 * A client thread does what wrk does with one request: writes the whole body with write()
 * calls, then reads the answer 8 KiB per read() (wrk's buffer). A server thread reads the
 * body with 256 KiB read() calls and writes the answer back whole, as the daemon does.
 * Bodies and answers are BENCH_LOOPBACK_BYTES long (default: the 8x64x56x56 float32 tensor
 * in base64, 8,563,372 bytes). Prints
 *   bench http=loopback_floor bytes=<n> best_ms=<..> p50_ms=<..> mean_ms=<..>
 * for one round trip (body there, answer back), over LOOPBACK_RUNS round trips (the mean
 * is what wrk's latency line gives for the HTTP requests).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_time.h"

#define LOOPBACK_RUNS 100
#define CLIENT_READ   8192
#define SERVER_READ   (256 * 1024)
#define DEFAULT_BYTES (((size_t)8 * 64 * 56 * 56 * 4 + 2) / 3 * 4)

typedef struct {
    int fd; /* the accepted connection; the server thread closes it */
    size_t bytes;
    int failed;
} server_arg;

/* Writes all of p[0..n). 0, or -1 with errno. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads and drops n bytes, `chunk` bytes per read() at most. 0, or -1. */
static int read_all(int fd, char *scratch, size_t chunk, size_t n)
{
    while (n > 0) {
        ssize_t k = read(fd, scratch, n < chunk ? n : chunk);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        n -= (size_t)k;
    }
    return 0;
}

/* Answers each body; closes its socket when done or on a failure, which ends the client's
 * blocked write() or read() with an error instead of a hang. */
static void *serve(void *p)
{
    server_arg *a = p;
    char *answer = malloc(a->bytes), *scratch = malloc(SERVER_READ);
    a->failed = !answer || !scratch;
    if (!a->failed) {
        memset(answer, 'B', a->bytes);
        for (int r = 0; r < LOOPBACK_RUNS && !a->failed; r++)
            a->failed = read_all(a->fd, scratch, SERVER_READ, a->bytes) < 0 ||
                        write_all(a->fd, answer, a->bytes) < 0;
    }
    free(answer);
    free(scratch);
    close(a->fd);
    return NULL;
}

/* A listening socket on a free loopback port; its address in *sa. -1 on failure. */
static int listen_loopback(struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t len = sizeof *sa;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)sa, sizeof *sa) < 0 ||
        getsockname(fd, (struct sockaddr *)sa, &len) < 0 || listen(fd, 1) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* A connected pair of loopback TCP sockets: *client and *server. 0, or -1 with errno. The
 * connection completes in the listen backlog, so one thread can connect, then accept. */
static int connect_pair(int *client, int *server)
{
    struct sockaddr_in sa;
    int lfd = listen_loopback(&sa);
    *client = *server = -1;
    if (lfd < 0)
        return -1;
    *client = socket(AF_INET, SOCK_STREAM, 0);
    if (*client >= 0 && connect(*client, (struct sockaddr *)&sa, sizeof sa) == 0)
        *server = accept(lfd, NULL, NULL);
    close(lfd);
    if (*server < 0) {
        if (*client >= 0)
            close(*client);
        return -1;
    }
    return 0;
}

int main(void)
{
    const char *env = getenv("BENCH_LOOPBACK_BYTES");
    char *end = NULL;
    size_t bytes = env ? strtoull(env, &end, 10) : DEFAULT_BYTES;
    if (bytes == 0 || (env && *end != '\0')) {
        fprintf(stderr, "bench_loopback: BENCH_LOOPBACK_BYTES must be a positive count\n");
        return 1;
    }
    /* a peer that closed early is an error from write(), not a silent death */
    signal(SIGPIPE, SIG_IGN);
    int fd;
    server_arg arg = {-1, bytes, 0};
    if (connect_pair(&fd, &arg.fd) < 0) {
        perror("bench_loopback: loopback connection");
        return 1;
    }
    pthread_t server;
    if (pthread_create(&server, NULL, serve, &arg) != 0) {
        fprintf(stderr, "bench_loopback: cannot start the server thread\n");
        return 1;
    }
    char *body = malloc(bytes), *scratch = malloc(CLIENT_READ);
    double ms[LOOPBACK_RUNS];
    int ok = body && scratch;
    if (ok)
        memset(body, 'A', bytes);
    for (int r = 0; r < LOOPBACK_RUNS && ok; r++) {
        double t0 = now_ms();
        ok = write_all(fd, body, bytes) == 0 && read_all(fd, scratch, CLIENT_READ, bytes) == 0;
        ms[r] = now_ms() - t0;
    }
    /* ends the server thread's read() if the client stopped early */
    shutdown(fd, SHUT_RDWR);
    pthread_join(server, NULL);
    close(fd);
    free(body);
    free(scratch);
    if (!ok || arg.failed) {
        fprintf(stderr, "bench_loopback: the loopback transfer failed\n");
        return 1;
    }
    double sum = 0;
    for (int r = 0; r < LOOPBACK_RUNS; r++)
        sum += ms[r];
    qsort(ms, LOOPBACK_RUNS, sizeof *ms, cmp_double);
    printf("bench http=loopback_floor bytes=%zu best_ms=%.2f p50_ms=%.2f mean_ms=%.2f\n", bytes,
           ms[0], ms[LOOPBACK_RUNS / 2], sum / LOOPBACK_RUNS);
    return 0;
}
