/*
 * soakutil.h — small helpers shared by the soak and slow-client programs (tests/soak/):
 * clocks, a process's resident memory, reading a JSON tensor in any form into doubles,
 * and the notebook fixture as request bodies. The daemon itself is started with the
 * integration harness (tests/integration/daemon.h) and spoken to with its libcurl client
 * (tests/integration/client.h), which these programs link.
 */
#ifndef SOAK_SOAKUTIL_H
#define SOAK_SOAKUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

double soak_now(void);

/* VmRSS of pid in KiB, or -1. */
long soak_rss_kb(pid_t pid);

/* Reads a nested or flat tensor (base64 is not needed here) into at most cap doubles.
 * Returns the element count, or -1 if node is not a tensor of numbers. */
long soak_tensor(const cJSON *node, double *out, long cap);

/* The notebook case (tests/fixtures/notebook.json), as JSON text for request bodies and as
 * the expected values. */
typedef struct soak_notebook {
    char *W, *x, *delta; /* JSON text of each tensor, nested as the fixture has them */
    double y[8], dx[16], dW[18], db[2];
} soak_notebook;

/* Loads dir/notebook.json. 0, or -1 with a message on stderr. */
int soak_notebook_load(const char *dir, soak_notebook *nb);
void soak_notebook_free(soak_notebook *nb);

/* Whether a's n values equal want's exactly (the notebook's values are integers). */
int soak_equal(const double *a, const double *want, long n);

#endif /* SOAK_SOAKUTIL_H */
