/* What the files of the C call path share (_callpath.c: the module, bind() and Slot;
 * _hostfunc.c: HostFunction). */
#ifndef OMNICORE_CALLPATH_H
#define OMNICORE_CALLPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "_epoch.h"

typedef struct { uint64_t lo, hi; } raw_val;  /* wasmtime_val_raw_t: 16 bytes */

/* Exports per slot whose call times are kept (see Slot.seen). */
#define LEARNT 4

typedef struct {
    PyObject_HEAD
    void *ctx;              /* wasmtime_context_t* of the instance's store */
    const void *memory;     /* wasmtime_memory_t* of its exported memory */
    unsigned long long buf; /* the input block (specs/abi.md §2.1) */
    unsigned long long cap;
    long long armed;        /* the engine epoch the deadline was last armed at, -1: none */
    int armed_hold;         /* ... and whether it was a holding call's (one tick away) */
    double timeout;         /* seconds a call may take */
    double deadline;        /* CLOCK_MONOTONIC seconds (time.monotonic()): host functions */
    void *error;            /* the last failed call's wasmtime_error_t*, for Python to take */
    void *trap;             /* ... and its wasm_trap_t* */
    Watch *watch;           /* the store's deadline callback state (watch()), or NULL */
    /* How long the last calls of a few exports took (ns, averaged): a call expected to
     * finish well within a tick keeps the GIL (_epoch.c). */
    struct { const void *func; uint64_t ns; } seen[LEARNT];
    int next_seen;
} Slot;

extern PyTypeObject SlotType;
extern PyTypeObject HostFunctionType;

/* The wasmtime functions host functions call, bound by bind() (_callpath.c). */
extern void *(*caller_context)(void *caller);
extern void *(*trap_new)(const char *message, size_t len);

int as_pointer(PyObject *o, void **out);
double monotonic(void);
/* The attribute names host_trampoline reads, interned once at import. */
int hostfunc_ready(void);

#endif
