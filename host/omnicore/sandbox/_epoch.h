/* The epoch clock and the GIL-holding calls of the C call path (implemented in _epoch.c, used
 * by _callpath.c). */
#ifndef OMNICORE_EPOCH_H
#define OMNICORE_EPOCH_H

#include <Python.h>
#include <stdatomic.h>
#include <stdint.h>

/* An engine's epoch as our own counter: raised before the engine's (so it is never behind
 * it), read by the deadline callback, which cannot ask wasmtime for the current epoch.
 * Shared by a Ticker and every watched store, freed by whichever lets go last.
 *
 * due_ns is when the next tick is due (CLOCK_MONOTONIC). The ticker is a thread like any
 * other: on a loaded machine it runs late, then adds every period that passed at once. A
 * deadline armed meanwhile from the counter alone ends its call early by that lag (seen:
 * 22 ms of a 200 ms deadline on a loaded 2-core CI machine), so every arm counts the ticks
 * owed: deadline_arm (_deadline.h), the door every C arm goes through. */
typedef struct {
    _Atomic uint64_t epoch;
    _Atomic int64_t due_ns;
    int64_t period_ns;
    _Atomic int refs;
} EpochClock;

/* The name of the capsule a Ticker's `clock` attribute answers (one reference to it). */
#define EPOCH_CLOCK_CAPSULE "omnicore.sandbox._callpath.EpochClock"

/* One store's state for its deadline callback. Owned by its Slot and by the store's
 * callback (freed when both let go); the fields are used only by the thread running the
 * store's call, so they need no lock. */
typedef struct {
    _Atomic int refs;
    EpochClock *clock;
    uint64_t deadline;     /* the epoch at which the running holding call is over */
    int holding;           /* the running call started with the GIL held: WATCH_HOLDING, then
                            * WATCH_LET_GO once the callback let it go (0: it did not) */
    int hit;               /* the callback ended a call at its deadline (read by Python) */
    PyThreadState *saved;  /* the GIL the callback released, for the call to take back */
} Watch;

#define WATCH_HOLDING 1
#define WATCH_LET_GO 2

extern PyTypeObject TickerType;

/* Install the deadline callback on a wasmtime_store_t* with the clock of `ticker` (a
 * Ticker); returns the new Watch (one reference for the caller) or NULL with an exception. */
Watch *watch_store(void *store, PyObject *ticker);
void watch_release(Watch *w);
/* bind_epoch(...) of the module: the wasmtime functions _epoch.c calls. */
PyObject *bind_epoch(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
int epoch_bound(void);

#endif
