/*
 * tlsfiles.h — reads the PEM files of tls_cert and tls_key for libmicrohttpd's HTTPS
 * (which takes them from memory), with errors that name the file and the setting.
 * The caller owns the returned strings and frees them (the key's memory is wiped first).
 */
#ifndef SERVER_TLSFILES_H
#define SERVER_TLSFILES_H

#include <stddef.h>

#include "config.h"

/* With cfg->tls_cert set: *cert and *key get the files' NUL-terminated text. Without:
 * both NULL. 0, or -1 with a message in err. */
int tlsfiles_load(const srv_config *cfg, char **cert, char **key, char *err, size_t err_size);
/* Frees what tlsfiles_load returned, wiping the key. NULLs are fine. */
void tlsfiles_free(char *cert, char *key);

#endif /* SERVER_TLSFILES_H */
