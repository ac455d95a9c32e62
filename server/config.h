/*
 * config.h — the daemon's settings (docs/api.md §6): one struct, filled from built-in
 * defaults < config file < CONVD_* environment < command-line flags.
 * The config file is `key = value` lines with `#` comments; parsing is strict (an unknown
 * key or a bad value is an error naming file:line). Nothing here allocates: every string
 * lives in a fixed array inside srv_config.
 */
#ifndef SERVER_CONFIG_H
#define SERVER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

#define CONFIG_STR_MAX  256
#define CONFIG_PATH_MAX 1024
#define CONFIG_NODE_MAX 40

/* Where the config file is looked for when neither --config nor CONVD_CONFIG names one
 * (relative to the working directory: `make run` and the tests start in the source tree). */
#define CONFIG_DEFAULT_PATH "config/convd.conf"

typedef struct srv_config {
    char bind[CONFIG_STR_MAX];          /* listen address (IPv4 or IPv6 literal, or a host name) */
    int port;                           /* 0..65535; 0 picks a free port */
    int threads;                        /* worker threads (MHD thread pool); 0 = CPU count */
    int blas_threads;                   /* threads per computation; 0 = the CPU count */
    uint64_t max_body_bytes;            /* request body limit */
    int max_sessions;                   /* live session limit */
    int max_connections_per_ip;         /* open connections from one address; 0 = no limit */
    double idle_timeout;                /* s a session may stay unused */
    uint64_t max_session_bytes;         /* weights + cache + workspace per session */
    double drain_timeout;               /* s in-flight requests get at shutdown */
    char api_key[CONFIG_STR_MAX];       /* "" = auth off; never logged */
    char api_key_file[CONFIG_PATH_MAX]; /* where api_key was read from, if a file */
    log_level log_level;
    char state_dir[CONFIG_PATH_MAX]; /* "" = sessions in memory only (v1); else their database */
    int persist_inputs;              /* 1: the forward cache (x) is stored too */
    char node_name[CONFIG_NODE_MAX + 1]; /* "" or [a-z0-9-]{1,40}: ids are NODE.<32 hex> */
    char config_path[CONFIG_PATH_MAX];   /* the file actually read; "" if none */
    /* the edge (api.md §8.3) */
    double header_timeout;          /* s from accept (or the last answer) to complete headers */
    uint64_t body_min_rate;         /* bytes/s a body must average after header_timeout; 0 = off */
    double connection_timeout;      /* s a keep-alive connection may stay idle */
    int max_connections;            /* open connections in all */
    uint64_t max_memory_bytes;      /* sessions + requests + answers; 0 = 75 % of memory */
    char tls_cert[CONFIG_PATH_MAX]; /* PEM certificate chain; "" = plain HTTP */
    char tls_key[CONFIG_PATH_MAX];  /* PEM private key; set together with tls_cert */
} srv_config;

typedef enum {
    CONFIG_RUN = 0,    /* serve */
    CONFIG_HELP,       /* print config_usage and exit 0 */
    CONFIG_VERSION,    /* print the version and exit 0 */
    CONFIG_HEALTHCHECK /* probe healthcheck_url and exit 0/1 */
} config_action;

/* The built-in defaults (threads and blas_threads still 0 = automatic). */
void config_defaults(srv_config *c);

/* Fills c from defaults, the config file, the environment (getenv) and argv, in rising
 * precedence, then resolves the automatic values (threads, blas_threads) and reads the API
 * key file. *action says what main should do; for CONFIG_HEALTHCHECK, url (url_size bytes)
 * receives the URL to probe. Returns 0, or -1 with a message in err naming the flag,
 * variable or file:line. */
int config_load(srv_config *c, int argc, char *const argv[], config_action *action, char *url,
                size_t url_size, char *err, size_t err_size);

/* Applies one `key = value` file (keys as in config/convd.conf) on top of c. 0 or -1 with
 * "path:line: ..." in err. */
int config_parse_file(srv_config *c, const char *path, char *err, size_t err_size);

/* Writes the --help text (every flag, variable, file key and default). */
void config_usage(FILE *out);

/* Logs the effective settings at info level (the API key only as set / not set). */
void config_log(const srv_config *c);

#endif /* SERVER_CONFIG_H */
