/* The plugin call path in C: one Python call copies the input into linear memory, calls the
 * handler with the GIL released, and copies the output out (specs/abi.md §2.2).
 *
 * Why C: through ctypes the same steps are about eight C calls, each converting its arguments
 * and dropping and re-taking the GIL; that Python work was most of a 100 B round trip and all
 * of what two threads calling plugins contend for. sandbox/fastcall.py is the other
 * implementation of the same contract, used when this module was not built or
 * OMNICORE_CALLPATH=python; the sandbox suite runs on both.
 *
 * wasmtime's C functions are not linked here: sandbox/fastcall.py passes their addresses from
 * the library wasmtime-py loaded (bind()), so both paths use one libwasmtime and the prototypes
 * below are checked by fastcall.check_private_names' list. No wasmtime header is needed.
 *
 * Memory safety: the input block [buf, buf+cap) was checked against linear memory when it was
 * allocated and memory never shrinks; the output (ptr, len) is checked against the memory's
 * current size before it is read. Anything else is left to Python (Slot.call's return value).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef struct { uint64_t lo, hi; } raw_val;  /* wasmtime_val_raw_t: 16 bytes */

typedef void *(*call_unchecked_fn)(void *ctx, const void *func, raw_val *args, size_t n,
                                   void **trap);
typedef void (*set_deadline_fn)(void *ctx, uint64_t ticks_beyond_current);
typedef uint8_t *(*memory_data_fn)(const void *ctx, const void *memory);
typedef size_t (*memory_size_fn)(const void *ctx, const void *memory);

static call_unchecked_fn call_unchecked;
static set_deadline_fn set_deadline;
static memory_data_fn memory_data;
static memory_size_fn memory_size;

typedef struct {
    PyObject_HEAD
    void *ctx;              /* wasmtime_context_t* of the instance's store */
    const void *memory;     /* wasmtime_memory_t* of its exported memory */
    unsigned long long buf; /* the input block (specs/abi.md §2.1) */
    unsigned long long cap;
    long long armed;        /* the engine epoch the deadline was last armed at, -1: none */
    double timeout;         /* seconds a call may take */
    double deadline;        /* CLOCK_MONOTONIC seconds (time.monotonic()): host functions */
    void *error;            /* the last failed call's wasmtime_error_t*, for Python to take */
    void *trap;             /* ... and its wasm_trap_t* */
} Slot;

static int
as_pointer(PyObject *o, void **out)
{
    *out = PyLong_AsVoidPtr(o);
    return !(*out == NULL && PyErr_Occurred());
}

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
    self->timeout = timeout;
    self->deadline = 0;
    self->error = self->trap = NULL;
    return 0;
}

static double
monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);  /* the clock time.monotonic() reads on Linux */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* call(func, data, ticks, epoch, max_output) -> bytes | int | False | None
 *
 * bytes: the handler succeeded and its output (within max_output, inside memory) is copied.
 * int: the packed result for Python to finish (an error result, an output over max_output or
 *      out of bounds). False: data does not fit the input block; grow it and call again.
 * None: the call trapped or failed; take_failure() hands over what wasmtime returned.
 * epoch is the engine's mirrored epoch (-1 if unknown): the deadline, `ticks` beyond the
 * current epoch, is re-armed only when it moved since the last call (it would be identical).
 */
static PyObject *
Slot_call(Slot *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "call(func, data, ticks, epoch, max_output)");
        return NULL;
    }
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
    self->deadline = monotonic() + self->timeout;
    if (epoch < 0 || epoch != self->armed) {
        set_deadline(self->ctx, ticks);
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
    Py_BEGIN_ALLOW_THREADS
    error = call_unchecked(ctx, func, raw, 2, &trap);
    Py_END_ALLOW_THREADS
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
    {"take_failure", (PyCFunction)Slot_take_failure, METH_NOARGS,
     "(error address, trap address) of the last failed call, handed over"},
    {"close", (PyCFunction)Slot_close, METH_NOARGS, "refuse further calls"},
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

static PyTypeObject SlotType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omnicore.sandbox._callpath.Slot",
    .tp_doc = "One instance's call state: input block, deadline, the last failure.",
    .tp_basicsize = sizeof(Slot),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Slot_init,
    .tp_methods = Slot_methods,
    .tp_members = Slot_members,
};

/* bind(call_unchecked, set_epoch_deadline, memory_data, memory_data_size): the addresses of
 * wasmtime's C functions in the library wasmtime-py loaded. */
static PyObject *
bind(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *a, *b, *c, *d;
    if (!PyArg_ParseTuple(args, "OOOO", &a, &b, &c, &d))
        return NULL;
    void *p[4];
    if (!as_pointer(a, &p[0]) || !as_pointer(b, &p[1]) || !as_pointer(c, &p[2])
        || !as_pointer(d, &p[3]))
        return NULL;
    for (int i = 0; i < 4; i++) {
        if (p[i] == NULL) {
            PyErr_SetString(PyExc_ValueError, "a wasmtime function address is null");
            return NULL;
        }
    }
    call_unchecked = (call_unchecked_fn)p[0];
    set_deadline = (set_deadline_fn)p[1];
    memory_data = (memory_data_fn)p[2];
    memory_size = (memory_size_fn)p[3];
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"bind", bind, METH_VARARGS, "bind(call_unchecked, set_deadline, memory_data, memory_size)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_callpath",
    "The plugin call path in C (see sandbox/fastcall.py for the contract).", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__callpath(void)
{
    if (PyType_Ready(&SlotType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SlotType);
    if (PyModule_AddObject(m, "Slot", (PyObject *)&SlotType) < 0) {
        Py_DECREF(&SlotType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
