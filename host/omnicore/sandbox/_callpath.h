/* The Slot of the C call path (_callpath.c: the module, bind() and Slot). The other files
 * of the extension are below it and know nothing of it: _hostfunc.h, _epoch.h and
 * _instantiate.h say what each gives the module, _capi.h what they all share. */
#ifndef OMNICORE_CALLPATH_H
#define OMNICORE_CALLPATH_H

#include "_capi.h"
#include "_epoch.h"

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

#endif
