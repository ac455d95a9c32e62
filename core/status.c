/*
 * status.c — status names, dtype facts and the error-message formatter. Stateless: there
 * is no global error slot; every message lands in the caller's own cvd_err.
 */
#include "cvd_internal.h"

#include <stdarg.h>

const char *cvd_strerror(cvd_status s)
{
    switch (s) {
    case CVD_OK:
        return "ok";
    case CVD_ERR_NOMEM:
        return "out of memory";
    case CVD_ERR_INVALID:
        return "invalid argument";
    case CVD_ERR_SHAPE:
        return "shape mismatch";
    case CVD_ERR_NO_CACHE:
        return "no forward cache";
    case CVD_ERR_NONFINITE:
        return "non-finite result";
    case CVD_ERR_TOO_LARGE:
        return "too large";
    }
    return "unknown status";
}

size_t cvd_dtype_size(cvd_dtype dt)
{
    switch (dt) {
    case CVD_F32:
        return sizeof(float);
    case CVD_F64:
        return sizeof(double);
    }
    return 0;
}

const char *cvd_dtype_name(cvd_dtype dt)
{
    switch (dt) {
    case CVD_F32:
        return "float32";
    case CVD_F64:
        return "float64";
    }
    return NULL;
}

cvd_status cvd_err_setf(cvd_err *err, cvd_status s, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return s;
}
