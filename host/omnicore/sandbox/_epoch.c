/* The engine's epoch ticker as a C thread, and the deadline callback that lets a short call
 * keep the GIL (specs/host.md, "The call path").
 *
 * Why: releasing and re-taking the GIL around a 0.1 µs guest call costs more than the call,
 * and when two threads call plugins every call hands the GIL over (two threads echoing ran
 * at 0.64x one thread). A call the slot has seen finish quickly therefore runs with the GIL
 * held. That is only safe if such a call cannot keep it: its store's deadline is armed one
 * tick away, and when that tick comes the callback below releases the GIL and from then on
 * looks at every tick; at the call's real deadline (or past it: interrupted) it ends the call.
 * The ticker has to be a C thread for this: a Python ticker needs the GIL to tick, which a
 * looping guest holding it would never give back.
 *
 * Once installed, the callback decides for its store at every deadline (wasmtime has no way
 * back to its own trap): a call not holding the GIL ends there, with an error whose `hit`
 * flag tells Python it was the deadline (sandbox/fastcall.py reports it as the epoch trap).
 */
#include "_capi.h"
#include "_deadline.h"
#include "_epoch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef void (*increment_epoch_fn)(void *engine);
typedef void *(*error_new_fn)(const char *message);
typedef void *(*deadline_cb_fn)(void *ctx, void *data, uint64_t *delta, uint8_t *kind);
typedef void (*set_callback_fn)(void *store, deadline_cb_fn func, void *data,
                                void (*finalizer)(void *));

static increment_epoch_fn increment_epoch;
static error_new_fn error_new;
static set_callback_fn set_callback;

#define UPDATE_DEADLINE_CONTINUE 0

static EpochClock *ticker_clock(PyObject *ticker);
/* The text of wasmtime's own epoch trap, so a message reads the same either way. */
static const char interrupt_message[] = "wasm trap: interrupt";

static int64_t
monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int
epoch_bound(void)
{
    return set_callback != NULL;
}

static void
clock_release(EpochClock *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        free(c);
}

void
watch_release(Watch *w)
{
    if (w != NULL && atomic_fetch_sub(&w->refs, 1) == 1) {
        clock_release(w->clock);
        free(w);
    }
}

static void
watch_finalize(void *data)  /* the store is being deleted: maybe without the GIL */
{
    watch_release((Watch *)data);
}

/* A call that started holding the GIL is watched by this callback until it ends: at its
 * first tick the callback lets the GIL go (WATCH_LET_GO), and from then on it looks at every
 * tick and ends the call once the clock reaches the call's deadline, as wasmtime's own trap
 * would. It never hands wasmtime the rest of the deadline as one delta. wasmtime adds a delta
 * to the engine's epoch as it reads it when the callback returns, after the GIL went, so an
 * interrupt() run in between (a thread waiting for the GIL runs at once) had its bump added to
 * the deadline and was lost; and the store kept that far deadline after the call, for the next
 * holding call whose arm the door skips (the same moment, _deadline.h), which then kept the
 * GIL to its deadline (tests/sandbox/test_gil_hold.py, both). One tick at a time, a bump in
 * between ends the call a tick later, and no deadline left in place is past the next tick. */
static void *
on_deadline(void *ctx, void *data, uint64_t *delta, uint8_t *kind)
{
    (void)ctx;
    Watch *w = (Watch *)data;
    *kind = UPDATE_DEADLINE_CONTINUE;
    if (w->holding) {
        uint64_t now = atomic_load(&w->clock->epoch);
        if (now < w->deadline) {
            /* A nested call (a host function calling back into the guest through ctypes)
             * already let the GIL go: it is let go when the outer call's guest runs again. */
            if (w->holding == WATCH_HOLDING && PyGILState_Check()) {
                w->saved = PyEval_SaveThread();
                w->holding = WATCH_LET_GO;
            }
            *delta = 1;
            return NULL;
        }
    }
    w->holding = 0;
    w->hit = 1;
    return error_new(interrupt_message);
}

Watch *
watch_store(void *store, PyObject *ticker_obj)
{
    if (!PyObject_TypeCheck(ticker_obj, &TickerType)) {
        PyErr_SetString(PyExc_TypeError, "watch(store, ticker): ticker must be a Ticker");
        return NULL;
    }
    if (!epoch_bound()) {
        PyErr_SetString(PyExc_RuntimeError, "bind_epoch() the wasmtime functions first");
        return NULL;
    }
    Watch *w = calloc(1, sizeof(Watch));
    if (w == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    w->clock = ticker_clock(ticker_obj);
    atomic_fetch_add(&w->clock->refs, 1);
    atomic_store(&w->refs, 2);  /* the caller's and the store's */
    set_callback(store, on_deadline, w, watch_finalize);
    return w;
}

/* ---- Ticker ------------------------------------------------------------------------------ */

#define MAX_ENGINES 4

typedef struct {
    PyObject_HEAD
    EpochClock *clock;
    PyObject *engines;          /* list: the wasmtime.Engine objects ticked, kept alive */
    void *addrs[MAX_ENGINES];   /* their wasm_engine_t* */
    int n;
    long long period_ns;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int started, stop;
    int held;                   /* hold(): no tick until release() (for tests) */
} Ticker;

static EpochClock *
ticker_clock(PyObject *t)
{
    return ((Ticker *)t)->clock;
}

static void
add_ns(struct timespec *ts, long long ns)
{
    long long total = ts->tv_nsec + ns;
    ts->tv_sec += total / 1000000000LL;
    ts->tv_nsec = total % 1000000000LL;
}

static long long
ns_between(const struct timespec *a, const struct timespec *b)  /* b - a */
{
    return (b->tv_sec - a->tv_sec) * 1000000000LL + (b->tv_nsec - a->tv_nsec);
}

static void
advance(Ticker *t, uint64_t ticks)  /* with t->mu held */
{
    /* Our counter first: the callback must never see it behind the engine. */
    atomic_fetch_add(&t->clock->epoch, ticks);
    for (uint64_t k = 0; k < ticks; k++)
        for (int i = 0; i < t->n; i++)
            increment_epoch(t->addrs[i]);
}

/* Ticks follow the clock, not the wake-ups: a thread woken late adds every period that
 * passed, so a deadline counted in ticks stretches by at most the last late wake-up. */
static void *
tick_loop(void *arg)
{
    Ticker *t = (Ticker *)arg;
    int64_t first = atomic_load(&t->clock->due_ns);
    struct timespec due = {first / 1000000000LL, first % 1000000000LL};
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        if (t->held) {  /* held back until release() (or close) signals */
            pthread_cond_wait(&t->cv, &t->mu);
            continue;
        }
        int rc = pthread_cond_timedwait(&t->cv, &t->mu, &due);
        if (t->stop)
            break;
        if (rc != ETIMEDOUT || t->held)
            continue;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long late = ns_between(&due, &now);
        uint64_t passed = 1 + (late > 0 ? (uint64_t)(late / t->period_ns) : 0);
        advance(t, passed);
        add_ns(&due, (long long)passed * t->period_ns);
        atomic_store(&t->clock->due_ns, (int64_t)due.tv_sec * 1000000000LL + due.tv_nsec);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static int
Ticker_init(Ticker *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"period_ms", NULL};
    int period_ms;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i", names, &period_ms))
        return -1;
    if (period_ms < 1) {
        PyErr_SetString(PyExc_ValueError, "period_ms must be at least 1");
        return -1;
    }
    if (!epoch_bound()) {
        PyErr_SetString(PyExc_RuntimeError, "bind_epoch() the wasmtime functions first");
        return -1;
    }
    if (self->clock != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Ticker is initialised once");
        return -1;
    }
    self->clock = calloc(1, sizeof(EpochClock));
    self->engines = PyList_New(0);
    if (self->clock == NULL || self->engines == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    atomic_store(&self->clock->refs, 1);
    self->period_ns = (long long)period_ms * 1000000LL;
    self->clock->period_ns = self->period_ns;
    atomic_store(&self->clock->due_ns, monotonic_ns() + self->period_ns);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&self->mu, NULL);
    if (pthread_create(&self->thread, NULL, tick_loop, self) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "could not start the epoch ticker thread");
        return -1;
    }
    self->started = 1;
    return 0;
}

static void
stop_thread(Ticker *self)
{
    if (!self->started)
        return;
    pthread_mutex_lock(&self->mu);
    self->stop = 1;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    /* The thread never takes the GIL, so joining while holding it cannot deadlock. */
    pthread_join(self->thread, NULL);
    self->started = 0;
}

static PyObject *
Ticker_add(Ticker *self, PyObject *args)
{
    PyObject *addr, *engine;
    if (!PyArg_ParseTuple(args, "OO", &addr, &engine))
        return NULL;
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "the engine address is null");
        return NULL;
    }
    if (self->clock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the Ticker is not initialised");
        return NULL;
    }
    pthread_mutex_lock(&self->mu);
    int full = self->n >= MAX_ENGINES;
    if (!full)
        self->addrs[self->n++] = p;
    pthread_mutex_unlock(&self->mu);
    if (full) {
        PyErr_SetString(PyExc_ValueError, "a Ticker ticks at most 4 engines");
        return NULL;
    }
    if (PyList_Append(self->engines, engine) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Ticker_bump(Ticker *self, PyObject *arg)
{
    unsigned long long ticks = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred())
        return NULL;
    if (self->clock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the Ticker is not initialised");
        return NULL;
    }
    pthread_mutex_lock(&self->mu);
    advance(self, ticks);
    pthread_mutex_unlock(&self->mu);
    Py_RETURN_NONE;
}

static PyObject *
Ticker_epoch_and_owed(Ticker *self, PyObject *Py_UNUSED(ignored))
{
    if (self->clock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the Ticker is not initialised");
        return NULL;
    }
    uint64_t epoch, owed;
    deadline_clock(self->clock, &epoch, &owed);  /* the Python door's reading (deadline.py) */
    return Py_BuildValue("(KK)", (unsigned long long)epoch, (unsigned long long)owed);
}

/* Hold the ticker back, as a machine too loaded to run its thread does: from hold() until
 * release() the thread ticks no more; released, it adds every period it missed at once (the
 * test of the deadline's door holds it while a call arms its deadline, and the call's guest
 * releases it: no timed sleep decides what happens when). */
static PyObject *
hold_ticker(Ticker *self, int held)
{
    if (self->clock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the Ticker is not initialised");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mu);
    self->held = held;
    pthread_cond_signal(&self->cv);
    pthread_mutex_unlock(&self->mu);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *
Ticker_hold(Ticker *self, PyObject *Py_UNUSED(ignored))
{
    return hold_ticker(self, 1);
}

static PyObject *
Ticker_release(Ticker *self, PyObject *Py_UNUSED(ignored))
{
    return hold_ticker(self, 0);
}

static PyObject *
Ticker_close(Ticker *self, PyObject *Py_UNUSED(ignored))
{
    Py_BEGIN_ALLOW_THREADS
    stop_thread(self);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *
Ticker_get_epoch(Ticker *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->clock ? atomic_load(&self->clock->epoch) : 0);
}

static void
clock_capsule_release(PyObject *capsule)
{
    clock_release(PyCapsule_GetPointer(capsule, EPOCH_CLOCK_CAPSULE));
}

/* The clock as a capsule (EPOCH_CLOCK_CAPSULE) holding a reference to it: what the C faces
 * of components (_compcall.c) arm their deadlines from through the door (_deadline.h). */
static PyObject *
Ticker_get_clock(Ticker *self, void *Py_UNUSED(closure))
{
    if (self->clock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the Ticker is not initialised");
        return NULL;
    }
    PyObject *capsule = PyCapsule_New(self->clock, EPOCH_CLOCK_CAPSULE, clock_capsule_release);
    if (capsule != NULL)
        atomic_fetch_add(&self->clock->refs, 1);
    return capsule;
}

static void
Ticker_dealloc(Ticker *self)
{
    stop_thread(self);
    if (self->clock != NULL) {
        pthread_mutex_destroy(&self->mu);
        pthread_cond_destroy(&self->cv);
    }
    clock_release(self->clock);
    Py_XDECREF(self->engines);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Ticker_methods[] = {
    {"add", (PyCFunction)Ticker_add, METH_VARARGS,
     "add(engine address, engine object): tick this engine too"},
    {"bump", (PyCFunction)Ticker_bump, METH_O, "bump(ticks): advance the epoch now"},
    {"epoch_and_owed", (PyCFunction)Ticker_epoch_and_owed, METH_NOARGS,
     "epoch_and_owed() -> (epoch, ticks the thread owes now: 0 unless it runs late)"},
    {"hold", (PyCFunction)Ticker_hold, METH_NOARGS,
     "hold(): no tick until release() (what a loaded machine does to the thread; for tests)"},
    {"release", (PyCFunction)Ticker_release, METH_NOARGS,
     "release(): let a held ticker tick again; it adds every period it missed at once"},
    {"close", (PyCFunction)Ticker_close, METH_NOARGS, "stop the thread (waits for it)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Ticker_getset[] = {
    {"epoch", (getter)Ticker_get_epoch, NULL, "ticks so far (never behind the engines)", NULL},
    {"clock", (getter)Ticker_get_clock, NULL,
     "the clock as a capsule, for the C faces' deadlines (_deadline.h)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject TickerType = {
    TYPE_HEAD("_callpath", Ticker, Py_TPFLAGS_DEFAULT,
              "Ticker(period_ms): a C thread raising the epoch of its engines every period."),
    .tp_init = (initproc)Ticker_init,
    .tp_methods = Ticker_methods,
    .tp_getset = Ticker_getset,
};

/* bind_epoch(engine_increment_epoch, error_new, store_epoch_deadline_callback) */
PyObject *
bind_epoch(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    void *p[3];
    if (!takes(nargs, 3, "bind_epoch(three addresses)") || !function_addresses(args, 3, p))
        return NULL;
    increment_epoch = (increment_epoch_fn)p[0];
    error_new = (error_new_fn)p[1];
    set_callback = (set_callback_fn)p[2];
    Py_RETURN_NONE;
}
