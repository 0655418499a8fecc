/* What the C files of the call path share, and depend on nothing else for: wasmtime's raw
 * value and the prototypes of the wasmtime functions more than one file calls, and small
 * helpers over Python's C API (those the log ring uses too are in _pyext.h). Everything here
 * is static inline: each file gets its own copy, so no file of the extension depends on
 * another for them. */
#ifndef OMNICORE_CAPI_H
#define OMNICORE_CAPI_H

#include "_pyext.h"

#include <stdint.h>
#include <time.h>

typedef struct { uint64_t lo, hi; } raw_val;  /* wasmtime_val_raw_t: 16 bytes */

typedef void *(*call_unchecked_fn)(void *ctx, const void *func, raw_val *args, size_t n,
                                   void **trap);
typedef void (*set_deadline_fn)(void *ctx, uint64_t ticks_beyond_current);
typedef size_t (*memory_size_fn)(const void *ctx, const void *memory);

/* 1 if a METH_FASTCALL method was given `want` arguments, else 0 with a TypeError showing
 * its `usage`. */
static inline int
takes(Py_ssize_t nargs, Py_ssize_t want, const char *usage)
{
    if (nargs == want)
        return 1;
    PyErr_SetString(PyExc_TypeError, usage);
    return 0;
}

/* An address given as a Python int; 0 with an exception if it is not one. */
static inline int
as_pointer(PyObject *o, void **out)
{
    *out = PyLong_AsVoidPtr(o);
    return !(*out == NULL && PyErr_Occurred());
}

/* The `n` wasmtime function addresses `objs` (Python ints, from a bind_*() call) into `out`;
 * 0 with an exception if one is not an address or is null. */
static inline int
function_addresses(PyObject *const *objs, int n, void **out)
{
    for (int i = 0; i < n; i++) {
        if (!as_pointer(objs[i], &out[i]))
            return 0;
        if (out[i] == NULL) {
            PyErr_SetString(PyExc_ValueError, "a wasmtime function address is null");
            return 0;
        }
    }
    return 1;
}

/* Seconds on the clock time.monotonic() reads on Linux. */
static inline double
monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
