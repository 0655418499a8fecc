/* The plugin call path in C: one Python call copies the input into linear memory, calls the
 * handler with the GIL released (or held, for a call expected short: _epoch.c), and copies the
 * output out (specs/abi.md §2.2). Host functions are in _hostfunc.c, instances started in C in
 * _instantiate.c; this file has the module, bind() and Slot.
 *
 * Why C: through ctypes the same steps are about eight C calls, each converting its arguments
 * and dropping and re-taking the GIL; that Python work was most of a 100 B round trip and all
 * of what two threads calling plugins contend for. sandbox/fastcall.py is the other
 * implementation of the same contract, used when this module was not built or
 * OMNICORE_CALLPATH=python; the sandbox suite runs on both.
 *
 * wasmtime's C functions are not linked here: sandbox/_wasmtime.py passes their addresses from
 * the library wasmtime-py loaded (bind()), so both paths use one libwasmtime, after checking
 * each name and argument count against the pinned wasmtime. No wasmtime header is needed.
 *
 * Memory safety: the input block [buf, buf+cap) was checked against linear memory when it was
 * allocated and memory never shrinks; the output (ptr, len) is checked against the memory's
 * current size before it is read. Anything else is left to Python (Slot.call's return value).
 */
#include "_callpath.h"

#include <structmember.h>
#include <string.h>

#include "_deadline.h"
#include "_hostfunc.h"
#include "_instantiate.h"

/* The average below which a call keeps the GIL: far below a tick, where handing the GIL over
 * would cost more than the call. */
#define HOLD_BELOW_NS 20000

typedef uint8_t *(*memory_data_fn)(const void *ctx, const void *memory);

static call_unchecked_fn call_unchecked;
static set_deadline_fn set_deadline;
static memory_data_fn memory_data;
static memory_size_fn memory_size;

static int
Slot_init(Slot *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"ctx", "memory", "timeout", NULL};
    PyObject *ctx, *memory;
    double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOd", names, &ctx, &memory, &timeout))
        return -1;
    if (call_unchecked == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind() the wasmtime functions first");
        return -1;
    }
    void *c, *m;
    if (!as_pointer(ctx, &c) || !as_pointer(memory, &m))
        return -1;
    if (c == NULL || m == NULL) {
        PyErr_SetString(PyExc_ValueError, "ctx and memory must be non-null addresses");
        return -1;
    }
    self->ctx = c;
    self->memory = m;
    self->buf = self->cap = 0;
    self->armed = -1;
    self->armed_hold = 0;
    self->timeout = timeout;
    self->deadline = 0;
    self->error = self->trap = NULL;
    watch_release(self->watch);
    self->watch = NULL;
    memset(self->seen, 0, sizeof self->seen);
    self->next_seen = 0;
    return 0;
}

/* Whether a call of `func` is expected to be short; -1 if this slot has not seen one. */
static int
seen_index(Slot *self, const void *func)
{
    for (int i = 0; i < LEARNT; i++)
        if (self->seen[i].func == func)
            return i;
    return -1;
}

static void
learn(Slot *self, const void *func, int i, uint64_t ns)
{
    if (i < 0) {
        i = self->next_seen;
        self->next_seen = (i + 1) % LEARNT;
        self->seen[i].func = func;
        self->seen[i].ns = ns;
        return;
    }
    self->seen[i].ns = (self->seen[i].ns * 3 + ns) / 4;
}

/* call(func, data, ticks, epoch, max_output) -> bytes | int | False | None
 *
 * bytes: the handler succeeded and its output (within max_output, inside memory) is copied.
 * int: the packed result for Python to finish (an error result, an output over max_output or
 *      out of bounds). False: data does not fit the input block; grow it and call again.
 * None: the call trapped or failed; take_failure() hands over what wasmtime returned.
 * epoch is the engine's mirrored epoch (-1 if unknown): the deadline, `ticks` from now, is
 * re-armed only when it moved since the last call (it would be identical). A watched slot
 * (watch()) arms through the door from its ticker's clock (_deadline.h) and only looks at
 * whether the argument is -1.
 */
static PyObject *
Slot_call(Slot *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes(nargs, 5, "call(func, data, ticks, epoch, max_output)"))
        return NULL;
    void *func;
    if (!as_pointer(args[0], &func))
        return NULL;
    PyObject *data = args[1];
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    unsigned long long ticks = PyLong_AsUnsignedLongLong(args[2]);
    long long epoch = PyLong_AsLongLong(args[3]);
    Py_ssize_t max_output = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (func == NULL || self->ctx == NULL) {
        PyErr_SetString(PyExc_ValueError, "no function, or the instance is closed");
        return NULL;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    if ((unsigned long long)n > self->cap)
        Py_RETURN_FALSE;
    double start = monotonic();
    self->deadline = start + self->timeout;
    Watch *w = self->watch;
    int seen = -1, hold = 0;
    if (w != NULL) {
        /* The door reads our ticker's clock (the argument only says -1: re-arm). */
        seen = seen_index(self, func);
        hold = seen >= 0 && self->seen[seen].ns < HOLD_BELOW_NS;
        w->hit = 0;
        w->holding = hold ? WATCH_HOLDING : 0;
        /* Either deadline is re-armed only when the clock moved since the last arm of its
         * kind (it would be identical, or for a holding call at most a tick away: the
         * callback never sets one further, _epoch.c). */
        if (epoch < 0 || hold != self->armed_hold)
            self->armed = -1;
        uint64_t at = deadline_arm(set_deadline, self->ctx, w->clock, ticks, hold,
                                   &self->armed);
        self->armed_hold = hold;
        if (hold)
            w->deadline = at;  /* the callback takes over at the next tick */
    } else if (epoch < 0 || epoch != self->armed) {  /* no ticker of ours: nothing owed */
        deadline_arm(set_deadline, self->ctx, NULL, ticks, 0, NULL);
        self->armed = epoch;
    }
    if (n) {
        uint8_t *base = memory_data(self->ctx, self->memory);
        memcpy(base + self->buf, PyBytes_AS_STRING(data), (size_t)n);
    }
    raw_val raw[2];
    raw[0].lo = self->buf;
    raw[0].hi = 0;
    raw[1].lo = (uint64_t)n;
    raw[1].hi = 0;
    void *trap = NULL, *error;
    void *ctx = self->ctx;
    /* The call's time ends before the GIL is taken back: waiting for it while other threads
     * run is not the export's time, and counting it would keep short exports from holding
     * it exactly when threads contend. */
    double end = 0;
    if (hold) {
        error = call_unchecked(ctx, func, raw, 2, &trap);
        end = monotonic();
        w->holding = 0;
        if (w->saved != NULL) {  /* it ran past a tick: the callback let the GIL go */
            PyEval_RestoreThread(w->saved);
            w->saved = NULL;
        }
    } else {
        Py_BEGIN_ALLOW_THREADS
        error = call_unchecked(ctx, func, raw, 2, &trap);
        if (w != NULL)
            end = monotonic();
        Py_END_ALLOW_THREADS
    }
    if (w != NULL)
        learn(self, func, seen, (uint64_t)((end - start) * 1e9));
    if (error != NULL || trap != NULL) {
        self->error = error;
        self->trap = trap;
        Py_RETURN_NONE;
    }
    uint64_t packed = raw[0].lo;
    uint64_t len = packed & 0x7FFFFFFFu, ptr = packed >> 32;
    if (!(packed & 0x80000000u) && len <= (uint64_t)max_output) {
        if (len == 0)  /* an empty output has no bytes: its ptr is not looked at (§2.2) */
            return PyBytes_FromStringAndSize(NULL, 0);
        if (ptr + len <= memory_size(self->ctx, self->memory)) {
            uint8_t *base = memory_data(self->ctx, self->memory);
            return PyBytes_FromStringAndSize((const char *)base + ptr, (Py_ssize_t)len);
        }
    }
    return PyLong_FromUnsignedLongLong(packed);
}

/* call1(func, arg) -> int | None: a re-entrant call of a guest function taking one integer
 * (omni_alloc from a host function, an Extism kernel function), its first result as an
 * unsigned 64-bit int (0 for none). None: it failed, take_failure() hands over why. Through
 * ctypes this cost a host function about a microsecond. The GIL is let go: the guest function
 * is as untrusted as any, and the deadline of the call it runs inside still holds. */
static PyObject *
Slot_call1(Slot *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes(nargs, 2, "call1(func, arg)"))
        return NULL;
    void *func;
    if (!as_pointer(args[0], &func))
        return NULL;
    unsigned long long arg = PyLong_AsUnsignedLongLongMask(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (func == NULL || self->ctx == NULL) {
        PyErr_SetString(PyExc_ValueError, "no function, or the instance is closed");
        return NULL;
    }
    raw_val raw[1];
    raw[0].lo = arg;
    raw[0].hi = 0;
    void *trap = NULL, *error;
    void *ctx = self->ctx;
    Py_BEGIN_ALLOW_THREADS
    error = call_unchecked(ctx, func, raw, 1, &trap);
    Py_END_ALLOW_THREADS
    if (error != NULL || trap != NULL) {
        self->error = error;
        self->trap = trap;
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong(raw[0].lo);
}

/* take_failure() -> (error address, trap address): what the last failed call returned, now
 * owned by the caller (who frees them through wasmtime-py); zeros if there is none. */
static PyObject *
Slot_take_failure(Slot *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = Py_BuildValue("(KK)", (unsigned long long)(uintptr_t)self->error,
                                  (unsigned long long)(uintptr_t)self->trap);
    self->error = self->trap = NULL;
    return out;
}

/* watch(store, ticker): install the deadline callback of _epoch.c on this instance's
 * wasmtime_store_t*, with the ticker's clock; from now on short calls may keep the GIL. */
static PyObject *
Slot_watch(Slot *self, PyObject *args)
{
    PyObject *store, *ticker;
    if (!PyArg_ParseTuple(args, "OO", &store, &ticker))
        return NULL;
    void *s;
    if (!as_pointer(store, &s))
        return NULL;
    if (s == NULL || self->ctx == NULL || self->watch != NULL) {
        PyErr_SetString(PyExc_ValueError, "watch() needs a store, an open slot, and is once");
        return NULL;
    }
    self->watch = watch_store(s, ticker);
    if (self->watch == NULL)
        return NULL;
    Py_RETURN_NONE;
}

/* take_hit() -> bool: whether the last failure was the deadline callback ending the call
 * (its error then stands for wasmtime's epoch trap); cleared by reading. */
static PyObject *
Slot_take_hit(Slot *self, PyObject *Py_UNUSED(ignored))
{
    int hit = self->watch != NULL && self->watch->hit;
    if (hit)
        self->watch->hit = 0;
    return PyBool_FromLong(hit);
}

static void
Slot_dealloc(Slot *self)
{
    watch_release(self->watch);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* close(): the store is being freed; later calls are refused instead of touching it. */
static PyObject *
Slot_close(Slot *self, PyObject *Py_UNUSED(ignored))
{
    self->ctx = NULL;
    self->memory = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Slot_methods[] = {
    {"call", (PyCFunction)(void (*)(void))Slot_call, METH_FASTCALL,
     "call(func, data, ticks, epoch, max_output) -> bytes | int | False | None"},
    {"call1", (PyCFunction)(void (*)(void))Slot_call1, METH_FASTCALL,
     "call1(func, arg) -> int | None: a re-entrant call of a one-argument guest function"},
    {"take_failure", (PyCFunction)Slot_take_failure, METH_NOARGS,
     "(error address, trap address) of the last failed call, handed over"},
    {"close", (PyCFunction)Slot_close, METH_NOARGS, "refuse further calls"},
    {"watch", (PyCFunction)Slot_watch, METH_VARARGS,
     "watch(store, ticker): let short calls keep the GIL, safely"},
    {"take_hit", (PyCFunction)Slot_take_hit, METH_NOARGS,
     "whether the last failure was the deadline (cleared by reading)"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Slot_members[] = {
    {"buf", T_ULONGLONG, offsetof(Slot, buf), 0, "input block address"},
    {"cap", T_ULONGLONG, offsetof(Slot, cap), 0, "input block size"},
    {"armed", T_LONGLONG, offsetof(Slot, armed), 0, "epoch of the last deadline arm, -1"},
    {"timeout", T_DOUBLE, offsetof(Slot, timeout), 0, "seconds a call may take"},
    {"deadline", T_DOUBLE, offsetof(Slot, deadline), 0, "the running call's deadline"},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject SlotType = {
    TYPE_HEAD("_callpath", Slot, Py_TPFLAGS_DEFAULT,
              "One instance's call state: input block, deadline, the last failure."),
    .tp_init = (initproc)Slot_init,
    .tp_methods = Slot_methods,
    .tp_members = Slot_members,
};


/* bind(call_unchecked, set_epoch_deadline, memory_data, memory_data_size, caller_context,
 * trap_new): the addresses of wasmtime's C functions in the library wasmtime-py loaded. */
static PyObject *
bind(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    void *p[6];
    if (!takes(nargs, 6, "bind(six addresses)") || !function_addresses(args, 6, p))
        return NULL;
    call_unchecked = (call_unchecked_fn)p[0];
    set_deadline = (set_deadline_fn)p[1];
    memory_data = (memory_data_fn)p[2];
    memory_size = (memory_size_fn)p[3];
    bind_hostfunc(p[4], p[5]);
    Py_RETURN_NONE;
}

/* For host functions (_hostfunc.h): the deadline of the call running in Slot `o`. */
static int
slot_deadline(PyObject *o, double *deadline)
{
    if (!Py_IS_TYPE(o, &SlotType))
        return 0;
    *deadline = ((Slot *)o)->deadline;
    return 1;
}

static PyMethodDef module_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL,
     "bind the wasmtime C functions (six addresses)"},
    {"bind_epoch", (PyCFunction)(void (*)(void))bind_epoch, METH_FASTCALL,
     "bind the ticker's wasmtime C functions (three addresses)"},
    {"bind_instantiate", (PyCFunction)(void (*)(void))bind_instantiate, METH_FASTCALL,
     "bind the wasmtime C functions Instance uses (ten addresses, the extern offset)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_callpath",
    "The plugin call path in C (see sandbox/fastcall.py for the contract).", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__callpath(void)
{
    static PyTypeObject *const types[] = {&SlotType, &HostFunctionType, &TickerType,
                                          &InstanceType, NULL};
    if (!hostfunc_ready(slot_deadline))
        return NULL;
    PyObject *m = module_with_types(&module_def, types);
    if (m != NULL && PyModule_AddIntConstant(m, "SCRATCH_WORDS", SCRATCH_WORDS) < 0)
        Py_CLEAR(m);
    return m;
}