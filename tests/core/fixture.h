/*
 * fixture.h — test-only access to the JSON fixtures (tests/fixtures, or $CONVD_FIXTURES):
 * load a file as a cJSON tree, and read a tensor given flat ({shape, data}) or nested.
 */
#ifndef TESTS_CORE_FIXTURE_H
#define TESTS_CORE_FIXTURE_H

#include <cjson/cJSON.h>
#include <stdint.h>

/* Parses $CONVD_FIXTURES/<name>; NULL if it cannot be read or parsed. Free with cJSON_Delete. */
cJSON *fx_load(const char *name);

/* A tensor read from a fixture: data (malloc'd, caller frees), rank and shape. */
typedef struct fx_tensor {
    double *data;
    int rank;
    int64_t shape[4];
    int64_t numel;
} fx_tensor;

/* Reads node (flat or nested) into t; 0 on success, -1 if malformed. */
int fx_tensor_read(const cJSON *node, fx_tensor *t);
void fx_tensor_free(fx_tensor *t);

#endif /* TESTS_CORE_FIXTURE_H */
