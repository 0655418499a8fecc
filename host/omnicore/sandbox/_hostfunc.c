/* Host functions of the C call path (the module and Slot are in _callpath.c, which hands
 * this file what it needs of them: _hostfunc.h).
 *
 * A host function is a wasmtime "unchecked" callback: the guest's arguments arrive as raw
 * 16-byte slots and the result goes back in the first. Through ctypes that callback costs more
 * than most host functions' own work (argument objects, a ctypes frame, the result's ctypes
 * box); here the slots become Python ints or floats and the implementation is called directly:
 * impl(state, memory, [caller,] *args), as sandbox/hostfunc.define_host_function documents.
 */
#include "_hostfunc.h"

#include <string.h>

#define MAX_HOST_PARAMS 16

typedef struct {
    PyObject_HEAD
    PyObject *impl;
    PyObject *state;
    PyObject *live;       /* dict: store context address -> RawInstance */
    PyObject *fail;       /* fail(inst or None, exc) -> bytes: the trap message */
    PyObject *stray_msg;  /* bytes: the trap for a call from a store not in live */
    int nparams;
    char kinds[MAX_HOST_PARAMS];  /* i: i32, u: unsigned i32, q: i64, f: f32, d: f64 */
    char result;                  /* 0, 'i' or 'q' */
    int pass_caller;
} HostFunction;

/* The Python objects a HostFunction holds (GC_FUNCTIONS, _pyext.h). */
#define HELD_OBJECTS(X) X(impl) X(state) X(live) X(fail) X(stray_msg)

typedef void *(*caller_context_fn)(void *caller);
typedef void *(*trap_new_fn)(const char *message, size_t len);

static caller_context_fn caller_context;
static trap_new_fn trap_new;
static slot_deadline_fn slot_deadline;

static PyObject *str_memory, *str_slot, *str_deadline, *str_deadline_hit;
static PyObject *str_start_memory;

void
bind_hostfunc(void *context_of_caller, void *new_trap)
{
    caller_context = (caller_context_fn)context_of_caller;
    trap_new = (trap_new_fn)new_trap;
}

int
hostfunc_ready(slot_deadline_fn read_slot_deadline)
{
    slot_deadline = read_slot_deadline;
    return (str_memory = PyUnicode_InternFromString("memory")) != NULL
        && (str_slot = PyUnicode_InternFromString("slot")) != NULL
        && (str_deadline = PyUnicode_InternFromString("deadline")) != NULL
        && (str_deadline_hit = PyUnicode_InternFromString("deadline_hit")) != NULL
        && (str_start_memory = PyUnicode_InternFromString("start_memory")) != NULL;
}

static int
HostFunction_init(HostFunction *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"impl", "state", "live", "fail", "stray_message", "params", "result",
                            "pass_caller", NULL};
    PyObject *impl, *state, *live, *fail, *stray_msg;
    const char *params, *result;
    int pass_caller;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!OO!ssp", names, &impl, &state,
                                     &PyDict_Type, &live, &fail, &PyBytes_Type, &stray_msg,
                                     &params, &result, &pass_caller))
        return -1;
    size_t n = strlen(params);
    if (n > MAX_HOST_PARAMS || strspn(params, "iuqfd") != n
        || !(result[0] == 0 || ((result[0] == 'i' || result[0] == 'q') && result[1] == 0))) {
        PyErr_SetString(PyExc_ValueError, "params: up to 16 of iuqfd; result: '', 'i' or 'q'");
        return -1;
    }
    Py_INCREF(impl); Py_XSETREF(self->impl, impl);
    Py_INCREF(state); Py_XSETREF(self->state, state);
    Py_INCREF(live); Py_XSETREF(self->live, live);
    Py_INCREF(fail); Py_XSETREF(self->fail, fail);
    Py_INCREF(stray_msg); Py_XSETREF(self->stray_msg, stray_msg);
    self->nparams = (int)n;
    memcpy(self->kinds, params, n);
    self->result = result[0];
    self->pass_caller = pass_caller;
    return 0;
}

/* A host function holds arbitrary Python objects (a user's function and what it closes over)
 * that may refer back to the runtime holding it: the cyclic collector must see them. */
GC_FUNCTIONS(HostFunction, HELD_OBJECTS, GC_NOTHING)

static void *
trap_of(PyObject *message)  /* message: bytes, or NULL for the generic text */
{
    if (message != NULL && PyBytes_Check(message))
        return trap_new(PyBytes_AS_STRING(message), (size_t)PyBytes_GET_SIZE(message));
    static const char generic[] = "host function failed";
    return trap_new(generic, sizeof generic - 1);
}

/* The deadline of the instance's running call: read from its C slot when it has one. */
static int
past_deadline(PyObject *inst)
{
    double deadline;
    PyObject *slot = PyObject_GetAttr(inst, str_slot);
    if (slot == NULL || !slot_deadline(slot, &deadline)) {
        PyErr_Clear();
        PyObject *d = PyObject_GetAttr(inst, str_deadline);
        deadline = d != NULL ? PyFloat_AsDouble(d) : 0;
        Py_XDECREF(d);
        if (PyErr_Occurred())
            return -1;
    }
    Py_XDECREF(slot);
    return monotonic() > deadline;
}

static void *
host_trampoline(void *env, void *caller, raw_val *slots, size_t nslots)
{
    (void)nslots;
    HostFunction *hf = (HostFunction *)env;
    PyGILState_STATE gil = PyGILState_Ensure();
    void *trap = NULL;
    PyObject *inst = NULL, *memory = NULL, *out = NULL;
    PyObject *argv[3 + MAX_HOST_PARAMS];
    int nargv = 0;

    if (hf->impl == NULL || hf->live == NULL || hf->fail == NULL) {
        /* Cleared by the collector with its runtime: no call can be running then, but a
         * callback must never follow a NULL. */
        trap = trap_of(NULL);
        goto done;
    }

    PyObject *key = PyLong_FromVoidPtr(caller_context(caller));
    if (key == NULL)
        goto failed;
    inst = PyDict_GetItemWithError(hf->live, key);
    Py_DECREF(key);
    if (inst == NULL) {
        if (PyErr_Occurred())
            goto failed;
        trap = trap_of(hf->stray_msg);
        goto done;
    }
    Py_INCREF(inst);
    memory = PyObject_GetAttr(inst, str_memory);
    if (memory == Py_None) {
        /* Called from the module's start function: the instance is registered, its exports
         * are not resolved yet; its memory is the caller's (fastcall.RawInstance). */
        Py_DECREF(memory);
        PyObject *who = PyLong_FromVoidPtr(caller);
        memory = who == NULL ? NULL : PyObject_CallMethodOneArg(inst, str_start_memory, who);
        Py_XDECREF(who);
    }
    if (memory == NULL)
        goto failed;
    argv[nargv++] = hf->state;
    argv[nargv++] = memory;
    if (hf->pass_caller) {
        if ((argv[nargv] = PyLong_FromVoidPtr(caller)) == NULL)
            goto failed;
        nargv++;
    }
    int first = nargv;
    for (int i = 0; i < hf->nparams; i++) {
        raw_val *v = &slots[i];
        PyObject *o;
        switch (hf->kinds[i]) {
        case 'i': o = PyLong_FromLong((long)(int32_t)(uint32_t)v->lo); break;
        case 'u': o = PyLong_FromUnsignedLong((unsigned long)(uint32_t)v->lo); break;
        case 'q': o = PyLong_FromLongLong((long long)(int64_t)v->lo); break;
        case 'f': { float f; uint32_t bits = (uint32_t)v->lo; memcpy(&f, &bits, 4);
                    o = PyFloat_FromDouble(f); break; }
        default: { double d; memcpy(&d, &v->lo, 8); o = PyFloat_FromDouble(d); break; }
        }
        if (o == NULL)
            goto failed;
        argv[nargv++] = o;
    }
    out = PyObject_Vectorcall(hf->impl, argv, (size_t)nargv, NULL);
    for (int i = hf->pass_caller ? first - 1 : first; i < nargv; i++)
        Py_DECREF(argv[i]);
    nargv = 0;
    if (out == NULL)
        goto failed;
    if (hf->result) {
        /* As ctypes stores a result: the low 32 or 64 bits of the int, any sign. */
        unsigned long long r = PyLong_AsUnsignedLongLongMask(out);
        if (r == (unsigned long long)-1 && PyErr_Occurred())
            goto failed;
        if (hf->result == 'i') {
            int32_t r32 = (int32_t)(uint32_t)r;
            memcpy(&slots[0].lo, &r32, 4);
        } else {
            slots[0].lo = r;
        }
    }
    /* Checked on the way back to the guest, once: host work runs outside the epoch check,
     * so this is what keeps a guest looping on host calls from outliving its deadline. */
    int past = past_deadline(inst);
    if (past < 0)
        goto failed;
    if (past) {
        if (PyObject_SetAttr(inst, str_deadline_hit, Py_True) < 0)
            goto failed;
        PyObject *msg = PyObject_CallFunctionObjArgs(hf->fail, inst, Py_None, NULL);
        trap = trap_of(msg);
        Py_XDECREF(msg);
        PyErr_Clear();
    }
    goto done;

failed:
    for (int i = 2; i < nargv; i++)  /* the caller and the argument objects */
        Py_DECREF(argv[i]);
    {
        PyObject *value = take_exception();
        PyObject *msg = PyObject_CallFunctionObjArgs(hf->fail, inst ? inst : Py_None,
                                                     value ? value : Py_None, NULL);
        trap = trap_of(msg);
        Py_XDECREF(msg);
        Py_XDECREF(value);
        PyErr_Clear();
    }
done:
    Py_XDECREF(out);
    Py_XDECREF(memory);
    Py_XDECREF(inst);
    PyGILState_Release(gil);
    return trap;
}

static PyObject *
HostFunction_get_callback(HostFunction *self, void *Py_UNUSED(closure))
{
    return PyLong_FromVoidPtr((void *)host_trampoline);
}

static PyGetSetDef HostFunction_getset[] = {
    {"callback", (getter)HostFunction_get_callback, NULL,
     "address of the C callback; its env is the address of this object", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject HostFunctionType = {
    GC_TYPE_HEAD("_callpath", HostFunction, "A host function's C callback and what it calls."),
    .tp_init = (initproc)HostFunction_init,
    .tp_getset = HostFunction_getset,
};
