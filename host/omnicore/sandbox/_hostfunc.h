/* Host functions of the C call path (implemented in _hostfunc.c, registered by _callpath.c,
 * which hands them what they need of it: the wasmtime functions they call and how to read a
 * Slot's deadline, so that _hostfunc.c depends on no other file). */
#ifndef OMNICORE_HOSTFUNC_H
#define OMNICORE_HOSTFUNC_H

#include "_capi.h"

extern PyTypeObject HostFunctionType;

/* 1 and the running call's deadline (CLOCK_MONOTONIC seconds) in `deadline` if `o` is a
 * Slot, else 0. */
typedef int (*slot_deadline_fn)(PyObject *o, double *deadline);

/* At import: intern the attribute names host_trampoline reads and take the Slot reader;
 * 0 with an exception on failure. */
int hostfunc_ready(slot_deadline_fn slot_deadline);
/* From bind(): wasmtime_caller_context and wasm_trap_new, which host functions call. */
void bind_hostfunc(void *caller_context, void *trap_new);

#endif
