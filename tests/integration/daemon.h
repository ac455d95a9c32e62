/*
 * daemon.h — runs the real convd binary for the integration tests.
 *
 * daemon_start fork/execs $CONVD_BIN (default build/convd) with `--port 0 --bind 127.0.0.1
 * --log-level warn` plus the test's own flags and CONVD_* variables (any CONVD_* already in
 * the environment is dropped, so the outer shell cannot change a test), and waits up to 10 s
 * for the `listening on 127.0.0.1:PORT` line. A thread keeps draining the daemon's stderr
 * into memory so the pipe never fills; daemon_log() shows it when a test fails.
 * Every started daemon is registered: an atexit hook SIGKILLs any left running, and the child
 * gets PR_SET_PDEATHSIG so a crashed test binary takes its daemon down too.
 * Ownership: a test_daemon is created by daemon_start and freed by daemon_stop/daemon_kill.
 */
#ifndef ITEST_DAEMON_H
#define ITEST_DAEMON_H

#include <sys/types.h>

typedef struct test_daemon test_daemon;

/* Starts convd with extra argv entries (NULL-terminated, may be NULL) and extra environment
 * entries "NAME=value" (NULL-terminated, may be NULL). Returns NULL (after printing why and
 * the daemon's stderr) if it does not come up within 10 s. */
test_daemon *daemon_start(const char *const *args, const char *const *env);

/* "http://127.0.0.1:PORT" */
const char *daemon_url(const test_daemon *d);
int daemon_port(const test_daemon *d);
pid_t daemon_pid(const test_daemon *d);

/* Sends sig to the daemon (SIGTERM/SIGINT for the drain tests). */
int daemon_signal(test_daemon *d, int sig);

/* Waits up to timeout_ms for the process to exit. Returns its wait status, or -1 on
 * timeout (the process is left running). */
int daemon_wait(test_daemon *d, int timeout_ms);

/* SIGTERM, wait up to 15 s (then SIGKILL), free. Returns the exit code (0..255), 128+signal
 * if killed by a signal, or -1 if it had to be SIGKILLed. Prints the daemon's stderr when
 * the exit was not clean. d NULL: returns 0. */
int daemon_stop(test_daemon *d);

/* SIGKILL and free, no questions asked (cleanup after a failed test). d NULL: no-op. */
void daemon_kill(test_daemon *d);

/* The daemon's stderr so far (NUL-terminated copy; caller frees). */
char *daemon_log(test_daemon *d);

/* Runs $CONVD_BIN with args (NULL-terminated) and env additions, without waiting for a
 * listening line; captures stdout+stderr (caller frees *out, may be NULL) and returns the
 * exit code, 128+signal, or -1 on timeout (then the process is killed). */
int daemon_run_cli(const char *const *args, const char *const *env, int timeout_ms, char **out);

/* The same for any command: cmd[0] (looked up in PATH when it has no '/') with its
 * arguments, NULL-terminated. The child's environment is this one without CONVD_*, plus
 * env. stdin is /dev/null; stdout and stderr are captured together. */
int daemon_run_cmd(const char *const *cmd, const char *const *env, int timeout_ms, char **out);

/* Path of the daemon binary ($CONVD_BIN or build/convd). */
const char *daemon_bin(void);

#endif /* ITEST_DAEMON_H */
