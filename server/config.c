/*
 * config.c — settings from defaults < config file < CONVD_* environment < flags.
 * One table (`settings[]`) names every setting's flag, variable and file key, so the three
 * sources, --help and the startup log cannot drift apart. Values are parsed strictly: a
 * number with trailing junk, a value out of range, or an unknown key is an error that says
 * where it came from (flag, variable, or file:line) and what is accepted.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../core/cvd.h"

static const srv_config defaults = {
    .bind = "127.0.0.1",
    .port = 8080,
    .threads = 0,
    .blas_threads = 0,
    .max_body_bytes = 67108864,
    .max_sessions = 1024,
    .max_connections_per_ip = 512,
    .idle_timeout = 900,
    .max_session_bytes = 1073741824,
    .drain_timeout = 10,
    .api_key = "",
    .api_key_file = "",
    .log_level = LOG_LEVEL_INFO,
    .state_dir = "",
    .persist_inputs = 0,
    .node_name = "",
    .config_path = "",
    .header_timeout = 10,
    .body_min_rate = 1024,
    .connection_timeout = 30,
    .max_connections = 1024,
};

/* K_DIR may be empty (state_dir: memory only); K_NODE is "" or [a-z0-9-]{1,40}. */
typedef enum {
    K_STR,
    K_INT,
    K_BYTES,
    K_SECONDS,
    K_LEVEL,
    K_KEY,
    K_KEYFILE,
    K_DIR,
    K_BOOL,
    K_NODE
} kind;

typedef struct setting {
    const char *key;  /* file key; NULL when the setting has no file key */
    const char *flag; /* without the leading "--" */
    const char *env;
    kind kind;
    size_t off;
    double min, max; /* for numbers */
    const char *arg; /* placeholder in --help */
    const char *help;
} setting;

#define OFF(f) offsetof(srv_config, f)

static const setting settings[] = {
    {"bind", "bind", "CONVD_BIND", K_STR, OFF(bind), 0, 0, "ADDR",
     "listen address, IPv4 or IPv6 (default 127.0.0.1; the container sets 0.0.0.0)"},
    {"port", "port", "CONVD_PORT", K_INT, OFF(port), 0, 65535, "N",
     "TCP port (default 8080; 0 = any free port; the line `listening on ADDR:PORT` names it)"},
    {"threads", "threads", "CONVD_THREADS", K_INT, OFF(threads), 0, 1024, "N",
     "worker threads serving requests (default 0 = the CPU count)"},
    {"blas_threads", "blas-threads", "CONVD_BLAS_THREADS", K_INT, OFF(blas_threads), 0, 1024, "N",
     "threads one forward/backward uses (default 0 = the CPU count: one large request uses "
     "every core; small layers never start threads)"},
    {"max_body_bytes", "max-body-bytes", "CONVD_MAX_BODY_BYTES", K_BYTES, OFF(max_body_bytes), 1, 0,
     "BYTES", "largest request body accepted (default 67108864 = 64 MiB)"},
    {"max_sessions", "max-sessions", "CONVD_MAX_SESSIONS", K_INT, OFF(max_sessions), 1, 10000000,
     "N",
     "live session limit (default 1024); at the limit the least recently used session idle "
     "for 60 s or more is evicted, else 429"},
    {"max_connections_per_ip", "max-connections-per-ip", "CONVD_MAX_CONNECTIONS_PER_IP", K_INT,
     OFF(max_connections_per_ip), 0, 1024, "N",
     "open connections one client address may hold (default 512 of the 1024 the daemon "
     "accepts, so one address cannot take them all; 0 = no limit, e.g. behind a proxy)"},
    {"idle_timeout", "idle-timeout", "CONVD_IDLE_TIMEOUT", K_SECONDS, OFF(idle_timeout), 0.001, 1e9,
     "SECONDS", "a session unused this long is dropped and then answers 410 (default 900)"},
    {"max_session_bytes", "max-session-bytes", "CONVD_MAX_SESSION_BYTES", K_BYTES,
     OFF(max_session_bytes), 1, 0, "BYTES",
     "memory one session (or one stateless request) may use: weights, cached input and "
     "workspace (default 1073741824 = 1 GiB)"},
    {"drain_timeout", "drain-timeout", "CONVD_DRAIN_TIMEOUT", K_SECONDS, OFF(drain_timeout), 0, 1e6,
     "SECONDS", "at SIGTERM/SIGINT, how long in-flight requests may run on (default 10)"},
    {NULL, "api-key", "CONVD_API_KEY", K_KEY, OFF(api_key), 0, 0, "KEY",
     "require `Authorization: Bearer KEY` on every endpoint but /healthz and /readyz "
     "(default: auth off). Prefer the file form: flags show in `ps`"},
    {"api_key_file", "api-key-file", "CONVD_API_KEY_FILE", K_KEYFILE, OFF(api_key_file), 0, 0,
     "FILE", "read the API key from the first line of FILE"},
    {"log_level", "log-level", "CONVD_LOG_LEVEL", K_LEVEL, OFF(log_level), 0, 0, "LEVEL",
     "debug, info, warn or error (default info; info logs one line per request)"},
    {"state_dir", "state-dir", "CONVD_STATE_DIR", K_DIR, OFF(state_dir), 0, 0, "DIR",
     "directory of the session database (SQLite, created if missing): sessions survive a "
     "restart or kill -9 (default empty = memory only; config/convd.conf sets var/state)"},
    {"persist_inputs", "persist-inputs", "CONVD_PERSIST_INPUTS", K_BOOL, OFF(persist_inputs), 0, 0,
     "BOOL",
     "also store each session's forward cache (x), so a backward works across a restart "
     "(default false: one write per forward saved)"},
    {"node_name", "node-name", "CONVD_NODE_NAME", K_NODE, OFF(node_name), 0, 0, "NAME",
     "this node's name, [a-z0-9-]{1,40}: session ids become NAME.<32 hex> so a router can "
     "send each session's requests here (default empty)"},
    /* the edge (api.md §8.3) */
    {"header_timeout", "header-timeout", "CONVD_HEADER_TIMEOUT", K_SECONDS, OFF(header_timeout),
     0.01, 1e6, "SECONDS",
     "a request whose headers are not complete this long after the connection opened (or "
     "after the previous answer, at least connection_timeout) is closed (default 10)"},
    {"body_min_rate", "body-min-rate", "CONVD_BODY_MIN_RATE", K_BYTES, OFF(body_min_rate), 0, 0,
     "BYTES",
     "bytes per second a request body must average once it has been arriving for "
     "header_timeout seconds, else the connection is closed (default 1024; 0 = no "
     "minimum)"},
    {"connection_timeout", "connection-timeout", "CONVD_CONNECTION_TIMEOUT", K_SECONDS,
     OFF(connection_timeout), 1, 1e6, "SECONDS",
     "a connection with nothing moving for this long (idle keep-alive, a client not reading "
     "its answer) is closed (default 30)"},
    {"max_connections", "max-connections", "CONVD_MAX_CONNECTIONS", K_INT, OFF(max_connections), 1,
     1000000, "N",
     "open connections in all (default 1024); more wait, or are closed at once while the "
     "limit is reached"},
    {"max_memory_bytes", "max-memory-bytes", "CONVD_MAX_MEMORY_BYTES", K_BYTES,
     OFF(max_memory_bytes), 0, 0, "BYTES",
     "one memory budget for all sessions, requests in flight and answers being sent: over it "
     "503 out_of_memory with Retry-After, a body larger than all of it 413 (default 0 = 75 % "
     "of the machine's or the cgroup's memory)"},
    {"tls_cert", "tls-cert", "CONVD_TLS_CERT", K_DIR, OFF(tls_cert), 0, 0, "FILE",
     "PEM certificate (chain) to serve HTTPS on the port, with tls_key (default empty: plain "
     "HTTP, where the API key travels in clear)"},
    {"tls_key", "tls-key", "CONVD_TLS_KEY", K_DIR, OFF(tls_key), 0, 0, "FILE",
     "PEM private key of tls_cert (default empty)"},
};
#define NSETTINGS (sizeof settings / sizeof settings[0])
_Static_assert(NSETTINGS <= 64, "config_parse_file marks settings seen in a uint64_t");

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

void config_defaults(srv_config *c)
{
    *c = defaults;
}

static const setting *by_key(const char *key)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].key && strcmp(settings[i].key, key) == 0)
            return &settings[i];
    return NULL;
}

static const setting *by_flag(const char *flag, size_t len)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if (strlen(settings[i].flag) == len && strncmp(settings[i].flag, flag, len) == 0)
            return &settings[i];
    return NULL;
}

/* Whole-string integer with an optional binary suffix (K, M, G, T, optionally "iB"). */
static int parse_bytes(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    if (*end) {
        const char *u = "KMGT";
        const char *p = strchr(u, toupper((unsigned char)*end));
        if (!p)
            return -1;
        shift = 10u * (unsigned)(p - u + 1);
        end++;
        if (strcasecmp(end, "ib") == 0 || strcasecmp(end, "b") == 0)
            end += strlen(end);
        if (*end)
            return -1;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_int(const char *s, long long *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Stores value into the field of `st`; `where` says which source it came from. */
static int set_value(srv_config *c, const setting *st, const char *v, const char *where, char *err,
                     size_t n)
{
    char *field = (char *)c + st->off;
    switch (st->kind) {
    case K_STR:
    case K_KEY:
    case K_KEYFILE: {
        size_t cap = st->kind == K_KEYFILE ? CONFIG_PATH_MAX : CONFIG_STR_MAX;
        size_t len = strlen(v);
        if (len == 0)
            return fail(err, n, "%s: %s must not be empty", where, st->flag);
        if (len >= cap)
            return fail(err, n, "%s: %s is too long (at most %zu bytes)", where, st->flag, cap - 1);
        memcpy(field, v, len + 1);
        /* api_key and api_key_file are one setting: the later, stronger source wins */
        if (st->kind == K_KEY)
            c->api_key_file[0] = '\0';
        else if (st->kind == K_KEYFILE)
            c->api_key[0] = '\0';
        return 0;
    }
    case K_INT: {
        long long x;
        if (parse_int(v, &x) || x < (long long)st->min || x > (long long)st->max)
            return fail(err, n, "%s: %s must be an integer from %.0f to %.0f, not \"%s\"", where,
                        st->flag, st->min, st->max, v);
        *(int *)field = (int)x;
        return 0;
    }
    case K_BYTES: {
        uint64_t x;
        if (parse_bytes(v, &x) || x < (uint64_t)st->min || x > (uint64_t)SIZE_MAX / 2)
            return fail(err, n,
                        "%s: %s must be a byte count >= %.0f (digits, optionally with K, M, G "
                        "or T for KiB..TiB), not \"%s\"",
                        where, st->flag, st->min, v);
        *(uint64_t *)field = x;
        return 0;
    }
    case K_SECONDS: {
        double x;
        if (parse_seconds(v, &x) || x < st->min || x > st->max)
            return fail(err, n, "%s: %s must be a number of seconds from %g to %g, not \"%s\"",
                        where, st->flag, st->min, st->max, v);
        memcpy(field, &x, sizeof x);
        return 0;
    }
    case K_DIR:
        if (strlen(v) >= CONFIG_PATH_MAX)
            return fail(err, n, "%s: %s is too long (at most %d bytes)", where, st->flag,
                        CONFIG_PATH_MAX - 1);
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case K_NODE: {
        size_t len = strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-");
        if (v[len] || len > CONFIG_NODE_MAX)
            return fail(err, n,
                        "%s: %s must be empty or 1 to %d characters of a-z, 0-9 and '-', not "
                        "\"%.64s\"",
                        where, st->flag, CONFIG_NODE_MAX, v);
        memcpy(field, v, len + 1);
        return 0;
    }
    case K_BOOL:
        if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
            *(int *)field = 1;
        else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
            *(int *)field = 0;
        else
            return fail(err, n, "%s: %s must be true or false, not \"%.64s\"", where, st->flag, v);
        return 0;
    case K_LEVEL: {
        log_level l;
        if (log_level_parse(v, &l))
            return fail(err, n, "%s: %s must be debug, info, warn or error, not \"%s\"", where,
                        st->flag, v);
        *(log_level *)field = l;
        return 0;
    }
    }
    return fail(err, n, "%s: internal error: bad setting kind", where);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

int config_parse_file(srv_config *c, const char *path, char *err, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(err, n, "%s: cannot open config file: %s", path, strerror(errno));
    char line[4096];
    char where[CONFIG_PATH_MAX + 32];
    uint64_t seen = 0; /* bit i: settings[i] already set in this file */
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = fail(err, n, "%s: line too long (at most %zu bytes)", where, sizeof line - 2);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = fail(err, n, "%s: expected `key = value`, got \"%s\"", where, s);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t vlen = strlen(val);
        if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
            val[vlen - 1] = '\0';
            val++;
        }
        const setting *st = by_key(key);
        if (!st) {
            char known[512];
            size_t k = 0;
            known[0] = '\0';
            for (size_t i = 0; i < NSETTINGS && k < sizeof known; i++)
                if (settings[i].key)
                    k += (size_t)snprintf(known + k, sizeof known - k, "%s%s", k ? ", " : "",
                                          settings[i].key);
            rc = fail(err, n, "%s: unknown key \"%s\" (known: %s)", where, key, known);
            break;
        }
        uint64_t bit = (uint64_t)1 << (st - settings);
        if (seen & bit) {
            rc = fail(err, n, "%s: key \"%s\" is set twice", where, key);
            break;
        }
        seen |= bit;
        char what[CONFIG_PATH_MAX + 64];
        snprintf(what, sizeof what, "%s", where);
        if (set_value(c, st, val, what, err, n)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc = fail(err, n, "%s: read error", path);
    fclose(f);
    return rc;
}

static int cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int k = CPU_COUNT(&set);
        if (k > 0)
            return k;
    }
    long k = sysconf(_SC_NPROCESSORS_ONLN);
    return k > 0 ? (int)k : 1;
}

static int read_key_file(srv_config *c, char *err, size_t n)
{
    FILE *f = fopen(c->api_key_file, "r");
    if (!f)
        return fail(err, n, "api_key_file %s: cannot open: %s", c->api_key_file, strerror(errno));
    char line[CONFIG_STR_MAX + 2];
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!ok)
        return fail(err, n, "api_key_file %s: the file is empty; put the key on its first line",
                    c->api_key_file);
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n')
        return fail(err, n, "api_key_file %s: the key is too long (at most %d bytes)",
                    c->api_key_file, CONFIG_STR_MAX - 1);
    char *k = trim(line);
    if (!*k)
        return fail(err, n, "api_key_file %s: the first line is empty; put the key there",
                    c->api_key_file);
    snprintf(c->api_key, sizeof c->api_key, "%s", k);
    return 0;
}

static void default_url(const srv_config *c, char *url, size_t n)
{
    const char *host = c->bind;
    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    if (strchr(host, ':'))
        snprintf(url, n, "http://[%s]:%d/healthz", host, c->port);
    else
        snprintf(url, n, "http://%s:%d/healthz", host, c->port);
}

typedef struct flagval {
    const setting *st;
    const char *val;
    const char *name; /* as written, for messages */
} flagval;

int config_load(srv_config *c, int argc, char *const argv[], config_action *action, char *url,
                size_t url_size, char *err, size_t n)
{
    config_defaults(c);
    *action = CONFIG_RUN;
    if (url_size)
        url[0] = '\0';
    const char *config_flag = NULL, *hc_url = NULL;
    int want_help = 0, want_version = 0, want_hc = 0;

    /* argv → (setting, value) pairs; applied last, in order, after file and environment */
    flagval *fv = calloc((size_t)(argc > 0 ? argc : 1), sizeof *fv);
    if (!fv)
        return fail(err, n, "out of memory");
    int nfv = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            want_help = 1;
            continue;
        }
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            want_version = 1;
            continue;
        }
        if (strcmp(a, "--healthcheck") == 0) {
            want_hc = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-')
                hc_url = argv[++i];
            continue;
        }
        if (strncmp(a, "--healthcheck=", 14) == 0) {
            want_hc = 1;
            hc_url = a + 14;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            free(fv);
            return fail(err, n, "unexpected argument \"%s\" (see --help)", a);
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const char *val = eq ? eq + 1 : NULL;
        int is_config = nlen == 6 && strncmp(name, "config", 6) == 0;
        const setting *st = is_config ? NULL : by_flag(name, nlen);
        if (!is_config && !st) {
            free(fv);
            return fail(err, n, "unknown option \"%s\" (see --help)", a);
        }
        if (!val) {
            if (i + 1 >= argc) {
                free(fv);
                return fail(err, n, "option %s needs a value (see --help)", a);
            }
            val = argv[++i];
        }
        if (is_config) {
            config_flag = val;
            continue;
        }
        fv[nfv++] = (flagval){st, val, a};
    }
    if (want_help || want_version) {
        free(fv);
        *action = want_help ? CONFIG_HELP : CONFIG_VERSION;
        return 0;
    }

    /* the file: --config > CONVD_CONFIG > config/convd.conf if present */
    const char *path = config_flag;
    if (!path || !*path)
        path = getenv("CONVD_CONFIG");
    if ((!path || !*path) && access(CONFIG_DEFAULT_PATH, R_OK) == 0)
        path = CONFIG_DEFAULT_PATH;
    if (path && *path) {
        if (strlen(path) >= sizeof c->config_path) {
            free(fv);
            return fail(err, n, "config file path too long");
        }
        if (config_parse_file(c, path, err, n)) {
            free(fv);
            return -1;
        }
        snprintf(c->config_path, sizeof c->config_path, "%s", path);
    }

    /* environment: key file before key, so CONVD_API_KEY wins if both are set */
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *st = &settings[i];
        if (st->kind == K_KEY)
            continue;
        const char *v = getenv(st->env);
        if (v && set_value(c, st, v, st->env, err, n)) {
            free(fv);
            return -1;
        }
    }
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *st = &settings[i];
        const char *v = getenv(st->env);
        if (st->kind == K_KEY && v && set_value(c, st, v, st->env, err, n)) {
            free(fv);
            return -1;
        }
    }

    for (int i = 0; i < nfv; i++) {
        if (set_value(c, fv[i].st, fv[i].val, fv[i].name, err, n)) {
            free(fv);
            return -1;
        }
    }
    free(fv);

    int cores = cpu_count();
    if (c->threads == 0)
        c->threads = cores;
    /* A large request should have every core; the core's helper threads come from one
     * budget of blas_threads - 1 shared by all requests, so busy workers do not multiply
     * threads (tests/core/test_layer.c checks layers computed in parallel this way). */
    if (c->blas_threads == 0)
        c->blas_threads = cores;
    if (c->api_key_file[0] && read_key_file(c, err, n))
        return -1;
    if (!c->tls_cert[0] != !c->tls_key[0])
        return fail(err, n, "tls_cert and tls_key go together: set both (HTTPS) or neither");

    if (want_hc) {
        *action = CONFIG_HEALTHCHECK;
        if (hc_url && *hc_url) {
            if (strlen(hc_url) >= url_size)
                return fail(err, n, "healthcheck URL too long");
            snprintf(url, url_size, "%s", hc_url);
        } else {
            default_url(c, url, url_size);
        }
    }
    return 0;
}

/* Prints text from column `indent` (the cursor is already there), wrapping at `width`. */
static void wrap(FILE *out, const char *text, int indent, int width)
{
    int col = indent;
    const char *p = text;
    while (*p) {
        size_t w = strcspn(p, " ");
        if (col > indent && col + 1 + (int)w > width) {
            fprintf(out, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', out);
            col++;
        }
        fwrite(p, 1, w, out);
        col += (int)w;
        p += w;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

void config_usage(FILE *out)
{
    fprintf(out,
            "Usage: convd [OPTION]...\n"
            "convd %s serves a 2-D convolution layer (PyTorch nn.Conv2d semantics, forward\n"
            "and backward, float32/float64) over HTTP/JSON. The API is described in\n"
            "docs/api.md: POST /sessions, GET|DELETE /sessions/{id}, POST /forward,\n"
            "POST /backward, GET /healthz, GET /readyz, GET /metrics, GET /.\n"
            "\n"
            "Every setting has a flag, a CONVD_* environment variable and (but the key\n"
            "itself) a config file key. Precedence: flag > environment > config file >\n"
            "built-in default. Flags take `--flag VALUE` or `--flag=VALUE`.\n"
            "\n"
            "Settings:\n",
            CVD_VERSION);
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting *st = &settings[i];
        char head[96], where[128];
        snprintf(head, sizeof head, "--%s %s", st->flag, st->arg);
        fprintf(out, "  %-32s ", head);
        wrap(out, st->help, 35, 80);
        snprintf(where, sizeof where, "env %s%s%s", st->env, st->key ? ", file key " : "",
                 st->key ? st->key : "");
        fprintf(out, "%35s", "");
        wrap(out, where, 35, 80);
    }
    fprintf(out,
            "\n"
            "Other options:\n"
            "  --config FILE                    read settings from FILE (env CONVD_CONFIG;\n"
            "                                   default " CONFIG_DEFAULT_PATH " when it exists\n"
            "                                   in the working directory). Format: one\n"
            "                                   `key = value` per line, `#` starts a comment;\n"
            "                                   an unknown key or bad value is an error.\n"
            "  --healthcheck [URL]              GET URL (default http://127.0.0.1:PORT/healthz\n"
            "                                   from the settings) and exit 0 if it answers\n"
            "                                   200, else 1; for container health checks.\n"
            "  -h, --help                       print this help and exit\n"
            "  -V, --version                    print the version and exit\n"
            "\n"
            "Byte counts accept a K, M, G or T suffix (binary: 64M = 67108864).\n"
            "Seconds may have a fraction (0.5).\n"
            "\n"
            "Signals: SIGTERM or SIGINT starts draining: /readyz answers 503, /healthz and\n"
            "/metrics stay 200, other new requests get 503 shutting_down, in-flight requests\n"
            "finish (for at most drain_timeout seconds), then convd exits 0. A second\n"
            "signal exits at once.\n"
            "\n"
            "Exit status: 0 on a clean shutdown, --help, --version and a healthy\n"
            "--healthcheck; 1 on a failed health check or a runtime failure; 2 on a bad\n"
            "option, variable or config file.\n");
}

void config_log(const srv_config *c)
{
    log_info("config: file=%s bind=%s port=%d threads=%d blas_threads=%d max_body_bytes=%llu "
             "max_sessions=%d max_connections_per_ip=%d idle_timeout=%gs max_session_bytes=%llu "
             "drain_timeout=%gs auth=%s log_level=%s state_dir=%s persist_inputs=%s node_name=%s",
             c->config_path[0] ? c->config_path : "(none)", c->bind, c->port, c->threads,
             c->blas_threads, (unsigned long long)c->max_body_bytes, c->max_sessions,
             c->max_connections_per_ip, c->idle_timeout, (unsigned long long)c->max_session_bytes,
             c->drain_timeout,
             c->api_key[0] ? (c->api_key_file[0] ? "on (key from api_key_file)" : "on") : "off",
             log_level_name(c->log_level), c->state_dir[0] ? c->state_dir : "(memory only)",
             c->persist_inputs ? "true" : "false", c->node_name[0] ? c->node_name : "(none)");
    log_info("config: header_timeout=%gs body_min_rate=%llu connection_timeout=%gs "
             "max_connections=%d max_memory_bytes=%llu tls=%s",
             c->header_timeout, (unsigned long long)c->body_min_rate, c->connection_timeout,
             c->max_connections, (unsigned long long)c->max_memory_bytes,
             c->tls_cert[0] ? c->tls_cert : "off");
}
