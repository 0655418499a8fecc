/* The C callback of component host functions (component/hostcalls.py), one file of the C
 * component call path (_compcall.c has the module; _compcall.h what its files share). */
#include "_compcall.h"

#include <string.h>

/* --- host callbacks (component/hostcalls.py) -------------------------------------------------
 * A host function the component imports, called by wasmtime with its arguments as C values:
 * here they become Python values (hostflat.py's reading: a string or enum case name as str,
 * list<u8> as bytes, a non-finite float as "nan"/"inf"/"-inf") and impl(state, *args) is
 * called; a bool answer is written here, any other through `lower(answer, results)` (the
 * codec's). An exception becomes `refuse(exc)`: the wasmtime_error_t* that traps the call,
 * in hostcalls' words. The ctypes callback (hostcalls._flat_callback) does the same in
 * Python; this saves its argument conversions and frame. */

enum { H_BYTES = W_STRING + 1, H_ENUM };

/* The enum case names a HostCall keeps (interned), for an enum argument to be no new str. */
#define MAX_NAMES 16

typedef struct {
    PyObject_HEAD
    PyObject *impl, *state, *refuse, *lower;
    int nparams;
    uint8_t kinds[MAX_CORE];  /* W_* scalars, W_STRING, H_BYTES, H_ENUM */
    int has_result;
    int result_bool;           /* a True/False answer is written here */
    int nnames;
    PyObject *names[MAX_NAMES];  /* the enum case names met so far (ASCII, interned) */
} HostCall;

typedef struct { size_t size; const char *data; } name_vec;   /* wasm_name_t */
typedef struct { size_t size; const cval *data; } val_vec;    /* wasmtime_component_vallist_t */

uint8_t kind_bool;  /* set by bind() */

static int
HostCall_init(HostCall *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"impl", "state", "kinds", "result", "refuse", "lower", NULL};
    PyObject *impl, *state, *kinds, *result, *refuse, *lower;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOO", names, &impl, &state, &kinds,
                                     &result, &refuse, &lower))
        return -1;
    if (!PyTuple_Check(kinds) || PyTuple_GET_SIZE(kinds) > MAX_CORE) {
        PyErr_SetString(PyExc_ValueError, "kinds: a tuple of at most 16 names");
        return -1;
    }
    self->nparams = (int)PyTuple_GET_SIZE(kinds);
    for (int i = 0; i < self->nparams; i++) {
        PyObject *k = PyTuple_GET_ITEM(kinds, i);
        if (PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, "bytes") == 0)
            self->kinds[i] = H_BYTES;
        else if (PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, "enum") == 0)
            self->kinds[i] = H_ENUM;
        else if (!wit_code(k, &self->kinds[i]))
            return -1;
    }
    self->has_result = result != Py_None;
    self->result_bool = PyUnicode_Check(result)
        && PyUnicode_CompareWithASCIIString(result, "bool") == 0;
    Py_XSETREF(self->impl, Py_NewRef(impl));
    Py_XSETREF(self->state, Py_NewRef(state));
    Py_XSETREF(self->refuse, Py_NewRef(refuse));
    Py_XSETREF(self->lower, Py_NewRef(lower));
    return 0;
}

/* The Python objects a HostCall holds (GC_FUNCTIONS, _pyext.h); the enum case names it kept
 * are interned strings, dropped on clearing too. */
#define HOSTCALL_HELD(X) X(impl) X(state) X(refuse) X(lower)

static void
drop_names(HostCall *self)
{
    for (int i = 0; i < self->nnames; i++)
        Py_CLEAR(self->names[i]);
    self->nnames = 0;
}

GC_FUNCTIONS(HostCall, HOSTCALL_HELD, drop_names)

/* An enum's case name (as a string argument reads it): the one kept, once met. */
static PyObject *
enum_name(HostCall *h, const cval *v)
{
    name_vec n;
    memcpy(&n, v->of.bytes, sizeof n);
    for (int i = 0; i < h->nnames; i++) {
        PyObject *s = h->names[i];
        if ((size_t)PyUnicode_GET_LENGTH(s) == n.size
                && memcmp(PyUnicode_DATA(s), n.data, n.size) == 0)
            return Py_NewRef(s);
    }
    PyObject *s = PyUnicode_DecodeUTF8(n.size ? n.data : "", (Py_ssize_t)n.size, NULL);
    if (s != NULL && h->nnames < MAX_NAMES && PyUnicode_IS_COMPACT_ASCII(s)) {
        PyUnicode_InternInPlace(&s);
        h->names[h->nnames++] = Py_NewRef(s);
    }
    return s;
}

/* One argument as hostflat.py reads it. */
static PyObject *
host_arg(HostCall *h, const cval *v, uint8_t k)
{
    if (k == H_ENUM)
        return enum_name(h, v);
    switch (k) {
    case W_BOOL: return PyBool_FromLong(v->of.bytes[0] != 0);
    case W_S8: return PyLong_FromLong((int8_t)v->of.bytes[0]);
    case W_U8: return PyLong_FromLong(v->of.bytes[0]);
    case W_S16: { int16_t x; memcpy(&x, v->of.bytes, 2); return PyLong_FromLong(x); }
    case W_U16: { uint16_t x; memcpy(&x, v->of.bytes, 2); return PyLong_FromLong(x); }
    case W_S32: return PyLong_FromLong((int32_t)v->of.u32);
    case W_U32: return PyLong_FromUnsignedLong(v->of.u32);
    case W_S64: return PyLong_FromLongLong((long long)(int64_t)v->of.u64);
    case W_U64: return PyLong_FromUnsignedLongLong(v->of.u64);
    case W_F32: return json_float((double)v->of.f32);
    case W_F64: return json_float(v->of.f64);
    case W_CHAR: return PyUnicode_FromOrdinal((int)v->of.u32);
    case W_STRING: {
        name_vec n;
        memcpy(&n, v->of.bytes, sizeof n);
        if (n.size == 0)
            return PyUnicode_FromStringAndSize(NULL, 0);
        return PyUnicode_DecodeUTF8(n.data, (Py_ssize_t)n.size, NULL);
    }
    default: {  /* H_BYTES: one C value per byte, the byte first in its payload */
        val_vec l;
        memcpy(&l, v->of.bytes, sizeof l);
        PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)l.size);
        if (b == NULL)
            return NULL;
        char *o = PyBytes_AS_STRING(b);
        for (size_t i = 0; i < l.size; i++)
            o[i] = (char)l.data[i].of.bytes[0];
        return b;
    }
    }
}

/* wasmtime_component_func_callback_t: env is the HostCall (hostcalls keeps it alive until
 * wasmtime's finalizer). Returns NULL or the wasmtime_error_t* that traps the call. */
void *
host_callback(void *env, void *ctx, const void *ty, const cval *args, size_t nargs,
              cval *results, size_t nresults)
{
    (void)ctx;
    (void)ty;
    HostCall *h = (HostCall *)env;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *argv[MAX_CORE + 1];
    PyObject *answer = NULL;
    void *error = NULL;
    int n = 0;
    argv[n++] = h->state;
    if (nargs != (size_t)h->nparams || (h->has_result && nresults < 1)) {
        PyErr_SetString(PyExc_TypeError, "wasmtime passed another number of values");
        goto failed;
    }
    for (int i = 0; i < h->nparams; i++) {
        PyObject *o = host_arg(h, &args[i], h->kinds[i]);
        if (o == NULL)
            goto failed;
        argv[n++] = o;
    }
    answer = PyObject_Vectorcall(h->impl, argv, (size_t)n, NULL);
    for (int i = 1; i < n; i++)
        Py_DECREF(argv[i]);
    n = 1;
    if (answer == NULL)
        goto failed;
    if (h->has_result) {
        if (h->result_bool && (answer == Py_True || answer == Py_False)) {
            results[0].kind = kind_bool;
            memset(results[0].of.bytes, 0, sizeof results[0].of.bytes);
            results[0].of.bytes[0] = answer == Py_True;
        } else {
            PyObject *addr = PyLong_FromVoidPtr(results);
            PyObject *r = addr == NULL ? NULL
                : PyObject_CallFunctionObjArgs(h->lower, answer, addr, NULL);
            Py_XDECREF(addr);
            if (r == NULL)
                goto failed;
            Py_DECREF(r);
        }
    }
    goto done;
failed:
    for (int i = 1; i < n; i++)
        Py_DECREF(argv[i]);
    {
        PyObject *value = take_exception();
        PyObject *r = PyObject_CallOneArg(h->refuse, value ? value : Py_None);
        if (r != NULL) {
            error = PyLong_AsVoidPtr(r);
            Py_DECREF(r);
        }
        Py_XDECREF(value);
        if (PyErr_Occurred())
            PyErr_WriteUnraisable((PyObject *)h);
        PyErr_Clear();
    }
done:
    Py_XDECREF(answer);
    PyGILState_Release(gil);
    return error;
}

PyTypeObject HostCallType = {
    GC_TYPE_HEAD("_compcall", HostCall,
                 "A component host function's C callback and what it calls."),
    .tp_init = (initproc)HostCall_init,
};
