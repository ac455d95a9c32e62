/*
 * tlsfiles.c — the PEM files of tlsfiles.h: each read whole (at most TLS_FILE_MAX bytes),
 * checked to hold a PEM block, NUL-terminated for libmicrohttpd.
 */
#include "tlsfiles.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_FILE_MAX (1 << 20) /* far above any certificate chain or key */

static char *read_pem(const char *path, const char *setting, char *err, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, n, "%s %s: cannot open: %s", setting, path, strerror(errno));
        return NULL;
    }
    char *text = malloc(TLS_FILE_MAX + 1);
    size_t len = text ? fread(text, 1, TLS_FILE_MAX + 1, f) : 0;
    int bad = !text || ferror(f);
    fclose(f);
    if (bad || len > TLS_FILE_MAX) {
        snprintf(err, n, "%s %s: %s", setting, path,
                 !text ? "out of memory"
                 : bad ? "read error"
                       : "larger than 1 MiB, not a PEM file?");
        free(text);
        return NULL;
    }
    text[len] = '\0';
    if (!strstr(text, "-----BEGIN ")) {
        snprintf(err, n, "%s %s: no PEM block (-----BEGIN ...) in it", setting, path);
        free(text);
        return NULL;
    }
    return text;
}

int tlsfiles_load(const srv_config *cfg, char **cert, char **key, char *err, size_t n)
{
    *cert = *key = NULL;
    if (!cfg->tls_cert[0])
        return 0;
    *cert = read_pem(cfg->tls_cert, "tls_cert", err, n);
    if (*cert)
        *key = read_pem(cfg->tls_key, "tls_key", err, n);
    if (!*key) {
        tlsfiles_free(*cert, NULL);
        *cert = NULL;
        return -1;
    }
    return 0;
}

void tlsfiles_free(char *cert, char *key)
{
    free(cert);
    if (key) {
        volatile char *p = key;
        while (*p)
            *p++ = 0;
        free(key);
    }
}
