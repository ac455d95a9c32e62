/*
 * daemon.c — start, watch and stop the convd process under test (see daemon.h).
 * The child's stderr is a pipe: the parent reads it until the listening line, then a
 * drain thread appends everything else to an in-memory log (capped) until EOF. The
 * environment is built in the parent and passed to execve, so nothing but async-signal-safe
 * calls run between fork and exec.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define LOG_CAP  (1u << 20)
#define MAX_LIVE 32

struct test_daemon {
    pid_t pid;
    int port;
    char url[64];
    int err_fd;
    pthread_t drainer;
    int drainer_started;
    pthread_mutex_t mu;
    char *log;
    size_t log_len;
    int exited;
    int wstatus;
};

static pid_t live[MAX_LIVE];
static int atexit_done;

static void kill_live(void)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
            live[i] = 0;
        }
    }
}

static void track(pid_t pid, int add)
{
    if (!atexit_done) {
        atexit(kill_live);
        atexit_done = 1;
    }
    for (int i = 0; i < MAX_LIVE; i++) {
        if (add && live[i] == 0) {
            live[i] = pid;
            return;
        }
        if (!add && live[i] == pid) {
            live[i] = 0;
            return;
        }
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

const char *daemon_bin(void)
{
    const char *b = getenv("CONVD_BIN");
    return b && *b ? b : "build/convd";
}

/* environ without CONVD_* (the outer shell must not change a test), plus extra. */
static char **build_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **envp = calloc(n + m + 1, sizeof *envp);
    if (!envp)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CONVD_", 6) != 0)
            envp[k++] = environ[i];
    for (size_t i = 0; i < m; i++)
        envp[k++] = (char *)extra[i];
    envp[k] = NULL;
    return envp;
}

static char **build_argv(const char *const *pre, const char *const *args)
{
    size_t n = 0, m = 0;
    while (pre && pre[n])
        n++;
    while (args && args[m])
        m++;
    char **argv = calloc(n + m + 2, sizeof *argv);
    if (!argv)
        return NULL;
    argv[0] = (char *)daemon_bin();
    for (size_t i = 0; i < n; i++)
        argv[1 + i] = (char *)pre[i];
    for (size_t i = 0; i < m; i++)
        argv[1 + n + i] = (char *)args[i];
    return argv;
}

/* Forks and execs argv/envp with stdout and stderr going to the returned pipe fd. */
static pid_t spawn(char **argv, char **envp, int *out_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        dup2(p[1], 1);
        dup2(p[1], 2);
        execvpe(argv[0], argv, envp);
        _exit(127);
    }
    close(p[1]);
    *out_fd = p[0];
    return pid;
}

static void log_append(test_daemon *d, const char *s, size_t n)
{
    pthread_mutex_lock(&d->mu);
    if (d->log_len + n > LOG_CAP)
        n = LOG_CAP - d->log_len;
    if (n > 0) {
        char *p = realloc(d->log, d->log_len + n + 1);
        if (p) {
            memcpy(p + d->log_len, s, n);
            d->log_len += n;
            p[d->log_len] = '\0';
            d->log = p;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

static void *drain(void *arg)
{
    test_daemon *d = arg;
    char chunk[4096];
    for (;;) {
        ssize_t r = read(d->err_fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        log_append(d, chunk, (size_t)r);
    }
    return NULL;
}

/* Looks for "listening on 127.0.0.1:PORT" in the log so far; the port or 0. */
static int find_port(test_daemon *d)
{
    int port = 0;
    pthread_mutex_lock(&d->mu);
    const char *p = d->log ? strstr(d->log, "listening on ") : NULL;
    if (p) {
        p += strlen("listening on ");
        const char *colon = strchr(p, ':');
        const char *eol = strchr(p, '\n');
        if (colon && eol && colon < eol)
            port = atoi(colon + 1);
    }
    pthread_mutex_unlock(&d->mu);
    return port;
}

static void free_daemon(test_daemon *d)
{
    if (d->drainer_started)
        pthread_join(d->drainer, NULL);
    if (d->err_fd >= 0)
        close(d->err_fd);
    pthread_mutex_destroy(&d->mu);
    free(d->log);
    free(d);
}

test_daemon *daemon_start(const char *const *args, const char *const *env)
{
    /* memory only unless the test passes its own --state-dir (later flags win): the source
     * tree's config/convd.conf would otherwise put every test daemon in var/state */
    static const char *const base[] = {"--port",      "0",    "--bind",       "127.0.0.1",
                                       "--log-level", "warn", "--state-dir=", NULL};
    test_daemon *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->err_fd = -1;
    pthread_mutex_init(&d->mu, NULL);
    char **argv = build_argv(base, args);
    char **envp = build_env(env);
    if (!argv || !envp) {
        free(argv);
        free(envp);
        free_daemon(d);
        return NULL;
    }
    d->pid = spawn(argv, envp, &d->err_fd);
    free(argv);
    free(envp);
    if (d->pid < 0) {
        fprintf(stderr, "daemon_start: cannot fork %s: %s\n", daemon_bin(), strerror(errno));
        free_daemon(d);
        return NULL;
    }
    track(d->pid, 1);
    if (pthread_create(&d->drainer, NULL, drain, d) == 0)
        d->drainer_started = 1;
    double deadline = now_ms() + 10000;
    while (now_ms() < deadline) {
        d->port = find_port(d);
        if (d->port > 0)
            break;
        if (waitpid(d->pid, &d->wstatus, WNOHANG) == d->pid) {
            d->exited = 1;
            track(d->pid, 0);
            break;
        }
        usleep(2000);
    }
    if (d->port <= 0) {
        char *log = daemon_log(d);
        fprintf(stderr, "daemon_start: %s did not print 'listening on' (%s); its output:\n%s\n",
                daemon_bin(), d->exited ? "it exited" : "timeout", log ? log : "");
        free(log);
        daemon_kill(d);
        return NULL;
    }
    snprintf(d->url, sizeof d->url, "http://127.0.0.1:%d", d->port);
    return d;
}

const char *daemon_url(const test_daemon *d)
{
    return d->url;
}

int daemon_port(const test_daemon *d)
{
    return d->port;
}

pid_t daemon_pid(const test_daemon *d)
{
    return d->pid;
}

int daemon_signal(test_daemon *d, int sig)
{
    if (d->exited)
        return -1;
    return kill(d->pid, sig);
}

int daemon_wait(test_daemon *d, int timeout_ms)
{
    if (d->exited)
        return d->wstatus;
    double deadline = now_ms() + timeout_ms;
    do {
        pid_t r = waitpid(d->pid, &d->wstatus, WNOHANG);
        if (r == d->pid) {
            d->exited = 1;
            track(d->pid, 0);
            return d->wstatus;
        }
        usleep(2000);
    } while (now_ms() < deadline);
    return -1;
}

static int exit_code(int ws)
{
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws))
        return 128 + WTERMSIG(ws);
    return -1;
}

int daemon_stop(test_daemon *d)
{
    if (!d)
        return 0;
    int rc;
    if (!d->exited)
        kill(d->pid, SIGTERM);
    int ws = daemon_wait(d, 15000);
    if (ws == -1) {
        fprintf(stderr, "daemon_stop: pid %d ignored SIGTERM for 15 s; killing it\n", d->pid);
        kill(d->pid, SIGKILL);
        daemon_wait(d, 5000);
        rc = -1;
    } else {
        rc = exit_code(ws);
    }
    if (rc != 0) {
        char *log = daemon_log(d);
        fprintf(stderr, "daemon_stop: exit status %d; daemon output:\n%s\n", rc, log ? log : "");
        free(log);
    }
    free_daemon(d);
    return rc;
}

void daemon_kill(test_daemon *d)
{
    if (!d)
        return;
    if (!d->exited) {
        kill(d->pid, SIGKILL);
        daemon_wait(d, 5000);
    }
    free_daemon(d);
}

char *daemon_log(test_daemon *d)
{
    pthread_mutex_lock(&d->mu);
    char *s = strdup(d->log ? d->log : "");
    pthread_mutex_unlock(&d->mu);
    return s;
}

int daemon_run_cli(const char *const *args, const char *const *env, int timeout_ms, char **out)
{
    char **argv = build_argv(NULL, args);
    if (!argv) {
        if (out)
            *out = NULL;
        return -1;
    }
    int rc = daemon_run_cmd((const char *const *)argv, env, timeout_ms, out);
    free(argv);
    return rc;
}

int daemon_run_cmd(const char *const *cmd, const char *const *env, int timeout_ms, char **out)
{
    size_t n = 0;
    while (cmd[n])
        n++;
    char **argv = calloc(n + 1, sizeof *argv);
    if (argv)
        for (size_t i = 0; i < n; i++)
            argv[i] = (char *)cmd[i];
    char **envp = build_env(env);
    int fd = -1;
    pid_t pid = argv && envp ? spawn(argv, envp, &fd) : -1;
    free(argv);
    free(envp);
    if (out)
        *out = NULL;
    if (pid < 0)
        return -1;
    track(pid, 1);
    char *text = NULL;
    size_t len = 0;
    int ws = 0, done = 0, eof = 0;
    double deadline = now_ms() + timeout_ms;
    while (now_ms() < deadline && !(done && eof)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (!eof && poll(&pfd, 1, 5) > 0) {
            char chunk[4096];
            ssize_t r = read(fd, chunk, sizeof chunk);
            if (r <= 0) {
                eof = 1;
            } else {
                char *p = realloc(text, len + (size_t)r + 1);
                if (p) {
                    memcpy(p + len, chunk, (size_t)r);
                    len += (size_t)r;
                    p[len] = '\0';
                    text = p;
                }
            }
        } else if (eof) {
            usleep(2000);
        }
        if (!done && waitpid(pid, &ws, WNOHANG) == pid)
            done = 1;
    }
    close(fd);
    int rc;
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        rc = -1;
    } else {
        rc = exit_code(ws);
    }
    track(pid, 0);
    if (out)
        *out = text ? text : strdup("");
    else
        free(text);
    return rc;
}
