/* Starting a plugin instance in C: the store, its limits, WASI, the deadline, instantiation,
 * the exports, _initialize and the input block (specs/abi.md §2.1), for fastcall.RawInstance.
 *
 * Why C: through ctypes these steps are a dozen C calls and as many Python objects, which was
 * half of what a fresh instance for every call (limits.isolation: per-call) cost. fastcall
 * keeps the same steps in Python for the Python path and for metered instances; both report a
 * failure alike (tests/sandbox/test_native_start.py).
 *
 * An Instance owns its store (deleted by close() or when the object goes) and a scratch block
 * in fastcall's layout, which RawInstance also reads from Python: words 0-3 call arguments,
 * 4-5 a re-entrant omni_alloc's, 6 the trap out-parameter, 7 fuel, 8-9 the
 * wasmtime_instance_t, then SCRATCH_EXTERNS wasmtime_extern_t of 32 bytes: memory,
 * omni_alloc, then the first functions looked up. Calls then go through a Slot (_callpath.c).
 *
 * As _callpath.c, no wasmtime header: sandbox/_wasmtime.py passes the functions' addresses
 * from the library wasmtime-py loaded (bind_instantiate()), all named in its NAMES.
 *
 * Memory safety: every address is wasmtime's (the store it made, the exports it looked up, of
 * the kind expected); the input block omni_alloc returns is checked against the memory's size
 * before anyone uses it; an Instance holding a store refuses to instantiate or start again.
 */
#include "_capi.h"
#include "_deadline.h"

#include <structmember.h>
#include <string.h>

#include "_instantiate.h"

#define EXTERN_FUNC 0
#define EXTERN_MEMORY 3

typedef void *(*store_new_fn)(void *engine, void *data, void (*finalizer)(void *));
typedef void *(*store_context_fn)(void *store);
typedef void (*store_delete_fn)(void *store);
typedef void (*store_limiter_fn)(void *store, int64_t memory_size, int64_t table_elements,
                                 int64_t instances, int64_t tables, int64_t memories);
typedef void *(*set_wasi_fn)(void *ctx, void *wasi_config);
typedef void *(*pre_instantiate_fn)(const void *pre, void *ctx, void *instance, void **trap);
typedef _Bool (*export_get_fn)(void *ctx, const void *instance, const char *name, size_t len,
                               void *item);

static call_unchecked_fn call_unchecked;
static set_deadline_fn set_deadline;
static memory_size_fn memory_size;
static store_new_fn store_new;
static store_context_fn store_context;
static store_delete_fn store_delete;
static store_limiter_fn store_limiter;
static set_wasi_fn set_wasi;
static pre_instantiate_fn pre_instantiate;
static export_get_fn export_get;
static size_t extern_of;  /* offset of wasmtime_extern_t.of (the payload) */

typedef struct {
    PyObject_HEAD
    void *store;                 /* wasmtime_store_t*, owned; NULL before and once freed */
    void *ctx;                   /* its wasmtime_context_t* */
    const void *memory;          /* the exported memory's wasmtime_memory_t* (in scratch) */
    unsigned long long buf, cap; /* the input block */
    unsigned long long handler;  /* the handler instantiate() looked up, or 0 */
    int externs;                 /* scratch externs in use */
    uint64_t scratch[SCRATCH_WORDS];
} Instance;

static void
free_store(Instance *self)
{
    void *store = self->store;
    self->store = self->ctx = NULL;
    self->memory = NULL;
    if (store != NULL) {
        Py_BEGIN_ALLOW_THREADS  /* freeing an instance unmaps its memory: no GIL needed */
        store_delete(store);
        Py_END_ALLOW_THREADS
    }
}

static void
Instance_dealloc(Instance *self)
{
    free_store(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The payload address of the next scratch extern if `name` is an export of `kind`, else NULL. */
static void *
lookup(Instance *self, const char *name, size_t len, int kind)
{
    if (self->externs >= SCRATCH_EXTERNS)
        return NULL;
    uint8_t *ext = (uint8_t *)&self->scratch[10 + 4 * self->externs];
    if (!export_get(self->ctx, &self->scratch[8], name, len, ext) || ext[0] != kind)
        return NULL;
    self->externs++;
    return ext + extern_of;
}

/* (stage, error address, trap address, message): a failure for fastcall to raise as
 * GuestFailure, the error and trap now owned by the caller. Steals `message`. */
static PyObject *
failure(const char *stage, void *error, void *trap, PyObject *message)
{
    PyObject *out = Py_BuildValue("(sKKO)", stage, (unsigned long long)(uintptr_t)error,
                                  (unsigned long long)(uintptr_t)trap,
                                  message != NULL ? message : Py_None);
    Py_XDECREF(message);
    return out;
}

/* Take `key` out of `live` again (a failed start), keeping any exception already set. */
static void
unregister(PyObject *live, PyObject *key)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PyDict_DelItem(live, key) < 0)
        PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* instantiate(engine, pre, wasi, memory_limit, table_elements, tables, ticks, handler, live,
 *             owner, clock=None) -> ctx | (stage, error, trap, None)
 *
 * ticks: the start's deadline, armed through the door (_deadline.h) from `clock` (the engine
 * Ticker's `clock` capsule; None: a ticker not ours, nothing owed).
 * wasi: a wasi_config_t* to hand over, or 0. handler: an export to look up now (str) or None;
 * its address is then .handler. live: the runtime's dict of instances by store context, where
 * `owner` (the Python instance) is entered as soon as the store exists, so that the module's
 * start function finds it when it calls host functions (specs/abi.md §2.1). On a failure
 * `owner` is taken out of live and the store is freed; stage is "instantiate", or None if
 * WASI could not be set. A module without memory or omni_alloc: ValueError.
 */
static PyObject *
Instance_instantiate(Instance *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10 && !takes(nargs, 11, "instantiate(engine, pre, wasi, memory_limit, "
                                          "table_elements, tables, ticks, handler, live, "
                                          "owner, clock=None)"))
        return NULL;
    EpochClock *clock = NULL;
    if (nargs == 11 && args[10] != Py_None
        && (clock = PyCapsule_GetPointer(args[10], EPOCH_CLOCK_CAPSULE)) == NULL)
        return NULL;
    PyObject *live = args[8], *owner = args[9];
    if (!PyDict_Check(live)) {
        PyErr_SetString(PyExc_TypeError, "live must be a dict");
        return NULL;
    }
    void *engine, *pre, *wasi;
    if (!as_pointer(args[0], &engine) || !as_pointer(args[1], &pre)
        || !as_pointer(args[2], &wasi))
        return NULL;
    long long memory_limit = PyLong_AsLongLong(args[3]);
    long long table_elements = PyLong_AsLongLong(args[4]);
    long long tables = PyLong_AsLongLong(args[5]);
    unsigned long long ticks = PyLong_AsUnsignedLongLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    const char *handler = NULL;
    Py_ssize_t handler_len = 0;
    if (args[7] != Py_None && (handler = PyUnicode_AsUTF8AndSize(args[7], &handler_len)) == NULL)
        return NULL;
    if (engine == NULL || pre == NULL) {
        PyErr_SetString(PyExc_ValueError, "engine and pre must be non-null addresses");
        return NULL;
    }
    if (store_new == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind_instantiate() the wasmtime functions first");
        return NULL;
    }
    if (self->store != NULL) {
        PyErr_SetString(PyExc_ValueError, "the Instance already holds an instance");
        return NULL;
    }
    self->externs = 0;  /* a failed instantiate may have looked some up */
    self->handler = self->buf = self->cap = 0;
    void *store = store_new(engine, NULL, NULL);
    if (store == NULL)
        return PyErr_NoMemory();
    self->store = store;
    void *ctx = self->ctx = store_context(store);
    /* One instance and one memory per store: a module cannot multiply its allowance. */
    store_limiter(store, memory_limit, table_elements, 1, tables, 1);
    void *error = NULL, *trap = NULL;
    if (wasi != NULL && (error = set_wasi(ctx, wasi)) != NULL) {
        free_store(self);
        return failure(NULL, error, NULL, NULL);
    }
    deadline_arm(set_deadline, ctx, clock, ticks, 0, NULL);
    PyObject *key = PyLong_FromVoidPtr(ctx);
    if (key == NULL || PyDict_SetItem(live, key, owner) < 0) {
        Py_XDECREF(key);
        free_store(self);
        return NULL;
    }
    /* From here every way out but success takes the entry out again before the store goes:
     * a later store may get the same context address. */
    PyObject *out = NULL;
    void *instance = &self->scratch[8];
    Py_BEGIN_ALLOW_THREADS  /* the start function is guest code */
    error = pre_instantiate(pre, ctx, instance, &trap);
    Py_END_ALLOW_THREADS
    if (error != NULL || trap != NULL) {
        out = failure("instantiate", error, trap, NULL);
        goto failed;
    }
    const void *memory = lookup(self, "memory", 6, EXTERN_MEMORY);
    if (memory == NULL) {
        PyErr_SetString(PyExc_ValueError, "the module does not export 'memory'");
        goto failed;
    }
    if (lookup(self, "omni_alloc", 10, EXTERN_FUNC) == NULL) {
        PyErr_SetString(PyExc_ValueError, "the module does not export omni_alloc");
        goto failed;
    }
    self->memory = memory;
    if (handler != NULL)
        self->handler = (unsigned long long)(uintptr_t)lookup(self, handler,
                                                               (size_t)handler_len, EXTERN_FUNC);
    if ((out = PyLong_FromVoidPtr(ctx)) != NULL) {
        Py_DECREF(key);
        return out;
    }
failed:
    unregister(live, key);
    Py_DECREF(key);
    free_store(self);
    return out;
}

/* Call a function of the instance on the scratch arguments; 0, or -1 with error/trap set. */
static int
invoke(Instance *self, const void *func, size_t nargs, void **error, void **trap)
{
    void *ctx = self->ctx;
    raw_val *raw = (raw_val *)self->scratch;
    Py_BEGIN_ALLOW_THREADS
    *error = call_unchecked(ctx, func, raw, nargs, trap);
    Py_END_ALLOW_THREADS
    return *error != NULL || *trap != NULL ? -1 : 0;
}

/* start(run_initialize, input_cap) -> None | (stage, error, trap, message)
 *
 * Runs _initialize (if asked and exported) and omni_alloc's the input block, rounded up to a
 * power of two, into .buf/.cap. stage: "_initialize" or "omni_alloc"; message: an
 * out-of-bounds block, for which error and trap are 0. omni_alloc returning 0: MemoryError.
 * The store is kept either way: the caller closes the Instance.
 */
static PyObject *
Instance_start(Instance *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes(nargs, 2, "start(run_initialize, input_cap)"))
        return NULL;
    int run_initialize = PyObject_IsTrue(args[0]);
    unsigned long long need = PyLong_AsUnsignedLongLong(args[1]);
    if (run_initialize < 0 || PyErr_Occurred())
        return NULL;
    if (self->store == NULL || self->externs < 2) {
        PyErr_SetString(PyExc_ValueError, "no instance to start");
        return NULL;
    }
    if (self->cap != 0) {
        PyErr_SetString(PyExc_ValueError, "the instance is started already");
        return NULL;
    }
    void *error = NULL, *trap = NULL;
    if (run_initialize) {  /* at most three externs are in use: one is free for it */
        const void *init = lookup(self, "_initialize", 11, EXTERN_FUNC);
        if (init != NULL && invoke(self, init, 0, &error, &trap) < 0)
            return failure("_initialize", error, trap, NULL);
    }
    /* As fastcall: the next power of two, at least 2 (1 << bit_length(max(need - 1, 1))). */
    unsigned long long m = need > 2 ? need - 1 : 1;
    if (m >> 31) {
        PyErr_SetString(PyExc_OverflowError, "input_cap over 2 GiB");
        return NULL;
    }
    unsigned long long cap = 1ull << (64 - __builtin_clzll(m));
    const void *alloc = (uint8_t *)&self->scratch[14] + extern_of;  /* extern 1 */
    self->scratch[0] = cap;
    if (invoke(self, alloc, 1, &error, &trap) < 0)
        return failure("omni_alloc", error, trap, NULL);
    unsigned long long ptr = self->scratch[0] & 0xFFFFFFFFu;
    if (ptr == 0)
        return PyErr_Format(PyExc_MemoryError, "omni_alloc(%llu) returned 0", cap);
    size_t size = memory_size(self->ctx, self->memory);
    if (ptr + cap > size) {
        PyObject *msg = PyUnicode_FromFormat(
            "omni_alloc(%llu) returned an out-of-bounds block: ptr=%llu len=%llu "
            "(memory is %zu bytes)", cap, ptr, cap, size);
        return msg == NULL ? NULL : failure("omni_alloc", NULL, NULL, msg);
    }
    self->buf = ptr;
    self->cap = cap;
    Py_RETURN_NONE;
}

/* close(): free the store (and the instance). Idempotent. */
static PyObject *
Instance_close(Instance *self, PyObject *Py_UNUSED(ignored))
{
    free_store(self);
    Py_RETURN_NONE;
}

static PyObject *
Instance_get_scratch(Instance *self, void *Py_UNUSED(closure))
{
    return PyLong_FromVoidPtr(self->scratch);
}

static PyObject *
Instance_get_store(Instance *self, void *Py_UNUSED(closure))
{
    return PyLong_FromVoidPtr(self->store);
}

static PyMethodDef Instance_methods[] = {
    {"instantiate", (PyCFunction)(void (*)(void))Instance_instantiate, METH_FASTCALL,
     "instantiate(engine, pre, wasi, memory_limit, table_elements, tables, ticks, handler, "
     "live, owner, clock=None) -> ctx | (stage, error, trap, None)"},
    {"start", (PyCFunction)(void (*)(void))Instance_start, METH_FASTCALL,
     "start(run_initialize, input_cap) -> None | (stage, error, trap, message)"},
    {"close", (PyCFunction)Instance_close, METH_NOARGS, "free the store and the instance"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Instance_members[] = {
    {"buf", T_ULONGLONG, offsetof(Instance, buf), READONLY, "input block address"},
    {"cap", T_ULONGLONG, offsetof(Instance, cap), READONLY, "input block size"},
    {"handler", T_ULONGLONG, offsetof(Instance, handler), READONLY,
     "address of the handler instantiate() looked up, or 0"},
    {"externs", T_INT, offsetof(Instance, externs), READONLY, "scratch externs in use"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Instance_getset[] = {
    {"scratch", (getter)Instance_get_scratch, NULL, "address of the scratch block", NULL},
    {"store", (getter)Instance_get_store, NULL, "the store's address, 0 once freed", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject InstanceType = {
    TYPE_HEAD("_callpath", Instance, Py_TPFLAGS_DEFAULT,
              "A store and its one instance, started in C (instantiate, start, close)."),
    .tp_methods = Instance_methods,
    .tp_members = Instance_members,
    .tp_getset = Instance_getset,
};

/* bind_instantiate(call_unchecked, set_epoch_deadline, memory_data_size, store_new,
 * store_context, store_delete, store_limiter, set_wasi, pre_instantiate, export_get,
 * extern_of): wasmtime's C functions from the library wasmtime-py loaded, and the offset of
 * wasmtime_extern_t's payload. */
#define NBOUND 10
PyObject *
bind_instantiate(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    void *p[NBOUND];
    if (!takes(nargs, NBOUND + 1, "bind_instantiate(ten addresses, extern_of)")
        || !function_addresses(args, NBOUND, p))
        return NULL;
    Py_ssize_t of = PyNumber_AsSsize_t(args[NBOUND], PyExc_OverflowError);
    if (of == -1 && PyErr_Occurred())
        return NULL;
    if (of < 0 || of > 24) {
        PyErr_SetString(PyExc_ValueError, "extern_of must lie inside a 32-byte extern");
        return NULL;
    }
    call_unchecked = (call_unchecked_fn)p[0];
    set_deadline = (set_deadline_fn)p[1];
    memory_size = (memory_size_fn)p[2];
    store_new = (store_new_fn)p[3];
    store_context = (store_context_fn)p[4];
    store_delete = (store_delete_fn)p[5];
    store_limiter = (store_limiter_fn)p[6];
    set_wasi = (set_wasi_fn)p[7];
    pre_instantiate = (pre_instantiate_fn)p[8];
    export_get = (export_get_fn)p[9];
    extern_of = (size_t)of;
    Py_RETURN_NONE;
}
