/* A component runtime's call face (issue 47): ComponentRuntime.call's hot path in one C call.
 * Lane.call(name, data) does what runtime.py's _call_python and _invoke_canon do around a
 * Face's call, with the Face's call_json:
 * takes an idle instance of the pool, clears its limiter's record, reads the engine's epoch
 * (the call's start, for its verdict) and the log's mark, sets the host functions' deadline
 * (hostcalls.enter), calls the Face (which arms the call's deadline), takes in the WASI
 * output, ends the call's host state (hostcalls.leave), gives the instance back, and refuses an
 * answer over the output limit.
 *
 * Whatever it does not take it answers NotImplemented for, having run nothing, and runtime.py
 * takes the call as before: an export without a JSON lane, input that is not bytes or over
 * the input limit, no idle instance (the pool makes one or waits), an instance without the
 * export's Face yet or with a descriptor watch, and JSON that is not plainly the arguments.
 * A failure of the call is handed to `failed(inst, name, start, mark, exc)`, which raises
 * the verdict every path gives and discards the instance; any other exception discards the
 * instance through pool.release(inst, False) and propagates. */
#include "_compcall.h"

typedef struct {
    PyObject_HEAD
    PyObject *lanes;      /* export name -> anything: those with a JSON lane */
    PyObject *pool;       /* the InstancePool: release(), notify(), waiters */
    PyObject *idle;       /* its idle list (never rebound) */
    PyObject *state;      /* hostcalls._CALL: deadline, refusal, ends */
    PyObject *clock;      /* the engine Ticker's clock capsule, which keeps `epochs` alive */
    EpochClock *epochs;   /* its epoch: the call's start (the Face arms from the clock) */
    PyObject *log;        /* the plugin's log: `written` */
    PyObject *output;     /* the WASI output to catch_up() after a call, or None */
    PyObject *leave;      /* hostcalls.leave */
    PyObject *failed;     /* failed(inst, name, start, mark, exc): raises the verdict */
    PyObject *too_large;  /* too_large(out, name): raises OutputTooLarge */
    Py_ssize_t max_in, max_out;
    double timeout_s;
    /* The last call's instance and export, with that instance's Face and limiter for it (an
     * instance's faces and limiter never change while it is open, and a closed one is never
     * idle): the next call on them skips four attribute reads. */
    PyObject *last_inst, *last_name, *last_face, *last_limiter;
    PyObject *fallback;   /* serve()'s way for what call() leaves: fallback(name, data), or NULL */
} Lane;

static PyObject *s_dict, *s_canon, *s_watch, *s_limiter, *s_refused, *s_written,
    *s_deadline, *s_refusal, *s_ends, *s_c, *s_catch_up, *s_release, *s_waiters, *s_notify;

/* The Python objects a Lane holds (GC_FUNCTIONS, _pyext.h). */
#define LANE_HELD(X) X(lanes) X(pool) X(idle) X(state) X(clock) X(log) X(output) X(leave) \
    X(failed) X(too_large) X(last_inst) X(last_name) X(last_face) X(last_limiter) X(fallback)

GC_FUNCTIONS(Lane, LANE_HELD, GC_NOTHING)

/* Lane(lanes, pool, state, clock, log, output, leave, failed, too_large, max_in, max_out,
 * timeout_s, fallback=None: serve()'s way for what call() leaves); clock: the engine Ticker's
 * clock capsule. */
static int
Lane_init(Lane *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"lanes", "pool", "state", "clock", "log", "output", "leave",
                            "failed", "too_large", "max_in", "max_out", "timeout_s", "fallback",
                            NULL};
    PyObject *o[9], *fallback = Py_None;
    Py_ssize_t max_in, max_out;
    double timeout_s;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOOOOOOOnnd|O", names, &PyDict_Type, &o[0],
                                     &o[1], &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8],
                                     &max_in, &max_out, &timeout_s, &fallback))
        return -1;
    PyObject *idle = PyObject_GetAttrString(o[1], "idle");
    if (idle == NULL)
        return -1;
    if (!PyList_CheckExact(idle)) {
        Py_DECREF(idle);
        PyErr_SetString(PyExc_TypeError, "pool.idle: a list");
        return -1;
    }
    Lane_clear(self);
    self->idle = idle;
    PyObject **slots[] = {&self->lanes, &self->pool, &self->state, &self->clock, &self->log,
                          &self->output, &self->leave, &self->failed, &self->too_large};
    for (int i = 0; i < 9; i++)
        *slots[i] = Py_NewRef(o[i]);
    if ((self->epochs = PyCapsule_GetPointer(o[3], EPOCH_CLOCK_CAPSULE)) == NULL)
        return -1;
    self->max_in = max_in;
    self->max_out = max_out;
    self->timeout_s = timeout_s;
    if (fallback != Py_None)
        self->fallback = Py_NewRef(fallback);
    return 0;
}

/* The instance back to the idle list (pool.release(inst, True) of a reused pool). */
static int
give_back(Lane *self, PyObject *inst)
{
    if (PyList_Append(self->idle, inst) < 0)
        return 0;
    PyObject *waiters = PyObject_GetAttr(self->pool, s_waiters);
    if (waiters == NULL)
        return 0;
    int some = PyObject_IsTrue(waiters);
    Py_DECREF(waiters);
    if (some < 0)
        return 0;
    if (some) {
        PyObject *r = PyObject_CallMethodNoArgs(self->pool, s_notify);
        if (r == NULL)
            return 0;
        Py_DECREF(r);
    }
    return 1;
}

/* After the call, however it ended: the WASI output taken in, the host state ended. */
static int
after_call(Lane *self, PyObject *state)
{
    if (self->output != Py_None) {
        PyObject *r = PyObject_CallMethodNoArgs(self->output, s_catch_up);
        if (r == NULL)
            return 0;
        Py_DECREF(r);
    }
    /* hostcalls.leave, when the call left something to end (none: the class's None) */
    PyObject *ends = PyDict_GetItemWithError(state, s_ends);
    if (ends == NULL && PyErr_Occurred())
        return 0;
    int some = ends == NULL ? 0 : PyObject_IsTrue(ends);
    if (some < 0)
        return 0;
    if (some) {
        PyObject *r = PyObject_CallNoArgs(self->leave);
        if (r == NULL)
            return 0;
        Py_DECREF(r);
    }
    return 1;
}

static PyObject *
Lane_call(Lane *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes(nargs, 2, "call(name, data)"))
        return NULL;
    PyObject *name = args[0], *data = args[1];
    if (!PyBytes_CheckExact(data) || PyBytes_GET_SIZE(data) > self->max_in)
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *lane = PyDict_GetItemWithError(self->lanes, name);
    if (lane == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_ssize_t n = PyList_GET_SIZE(self->idle);
    if (n == 0)
        Py_RETURN_NOTIMPLEMENTED;  /* the pool makes one, or waits */
    /* The call's start (for its verdict): the epoch; the Face arms the deadline through the
     * door (_deadline.h), counting the ticks a late ticker owes. */
    PyObject *start = PyLong_FromUnsignedLongLong(atomic_load(&self->epochs->epoch));
    if (start == NULL)
        return NULL;
    PyObject *inst = Py_NewRef(PyList_GET_ITEM(self->idle, n - 1));
    if (PyList_SetSlice(self->idle, n - 1, n, NULL) < 0) {
        Py_DECREF(inst);
        Py_DECREF(start);
        return NULL;
    }
    PyObject *out = NULL, *mark = NULL, *face = NULL, *limiter = NULL;
    PyObject *canon = NULL, *watch = NULL, *state = NULL;
    if (inst == self->last_inst && (name == self->last_name
                                    || PyUnicode_Compare(name, self->last_name) == 0)) {
        face = Py_NewRef(self->last_face);
        limiter = Py_NewRef(self->last_limiter);
    } else {
        if (PyErr_Occurred())
            goto discard;
        /* Taken as is, or handed back untouched. */
        canon = PyObject_GetAttr(inst, s_canon);
        watch = canon == NULL ? NULL : PyObject_GetAttr(inst, s_watch);
        if (watch == NULL)
            goto discard;
        PyObject *bound = PyDict_GetItemWithError(canon, name);
        if (bound == NULL && PyErr_Occurred())
            goto discard;
        if (bound == NULL || watch != Py_None) {
            out = give_back(self, inst) ? Py_NewRef(Py_NotImplemented) : NULL;
            goto done;
        }
        face = PyObject_GetAttr(bound, s_c);
        if (face == NULL)
            goto discard;
        if (!face_check(face)) {
            out = give_back(self, inst) ? Py_NewRef(Py_NotImplemented) : NULL;
            goto done;
        }
        if ((limiter = PyObject_GetAttr(inst, s_limiter)) == NULL)
            goto discard;
        Py_XSETREF(self->last_inst, Py_NewRef(inst));
        Py_XSETREF(self->last_name, Py_NewRef(name));
        Py_XSETREF(self->last_face, Py_NewRef(face));
        Py_XSETREF(self->last_limiter, Py_NewRef(limiter));
    }
    /* hostcalls.enter on the thread's own dict of the call state (one lookup of it) */
    if (PyObject_SetAttr(limiter, s_refused, Py_False) < 0
        || (mark = PyObject_GetAttr(self->log, s_written)) == NULL
        || (state = PyObject_GetAttr(self->state, s_dict)) == NULL)
        goto discard;
    if (!PyDict_CheckExact(state)) {
        PyErr_SetString(PyExc_TypeError, "the call state's __dict__ is not a dict");
        goto discard;
    }
    PyObject *deadline = PyFloat_FromDouble(monotonic() + self->timeout_s);
    if (deadline == NULL)
        goto discard;
    int set = PyDict_SetItem(state, s_deadline, deadline);
    Py_DECREF(deadline);
    if (set < 0 || PyDict_SetItem(state, s_refusal, Py_None) < 0)
        goto discard;
    out = face_call_json((Face *)face, data, start);
    {
        /* after_call runs Python: the call's exception waits (and one of its own wins). */
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        if (!after_call(self, state)) {
            Py_XDECREF(type);
            Py_XDECREF(exc);
            Py_XDECREF(tb);
            Py_CLEAR(out);
            goto discard;
        }
        PyErr_Restore(type, exc, tb);
    }
    if (out == NULL) {
        if (PyErr_ExceptionMatches(failed_type) || PyErr_ExceptionMatches(trap_type)) {
            PyObject *exc = take_exception();
            PyObject *r = PyObject_CallFunctionObjArgs(self->failed, inst, name, start, mark,
                                                       exc, NULL);
            Py_XDECREF(exc);
            Py_XDECREF(r);  /* it raises */
            goto done;
        }
        goto discard;
    }
    if (!give_back(self, inst)) {
        Py_CLEAR(out);
        goto done;
    }
    if (out != Py_NotImplemented && PyBytes_GET_SIZE(out) > self->max_out) {
        PyObject *r = PyObject_CallFunctionObjArgs(self->too_large, out, name, NULL);
        Py_XDECREF(r);  /* it raises */
        Py_CLEAR(out);
    }
    goto done;
discard:  /* an exception is set: the instance is not given back for reuse */
    {
        PyObject *type, *exc, *tb;
        PyErr_Fetch(&type, &exc, &tb);
        PyObject *r = PyObject_CallMethodObjArgs(self->pool, s_release, inst, Py_False, NULL);
        if (r == NULL) {
            Py_XDECREF(type);
            Py_XDECREF(exc);
            Py_XDECREF(tb);
        } else {
            Py_DECREF(r);
            PyErr_Restore(type, exc, tb);
        }
    }
done:
    Py_XDECREF(canon);
    Py_XDECREF(watch);
    Py_XDECREF(face);
    Py_XDECREF(limiter);
    Py_XDECREF(state);
    Py_XDECREF(start);
    Py_XDECREF(mark);
    Py_DECREF(inst);
    return out;
}

/* serve(name, data): call(), and what it leaves (NotImplemented: nothing ran) to the
 * fallback: the whole of ComponentRuntime.call without a Python frame around the C one. */
static PyObject *
Lane_serve(Lane *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *out = Lane_call(self, args, nargs);
    if (out != Py_NotImplemented || self->fallback == NULL)
        return out;
    Py_DECREF(out);
    return PyObject_Vectorcall(self->fallback, args, (size_t)nargs, NULL);
}

static PyMethodDef Lane_methods[] = {
    {"call", (PyCFunction)(void (*)(void))Lane_call, METH_FASTCALL,
     "call(name, data) -> the answer's JSON, or NotImplemented (nothing ran)"},
    {"serve", (PyCFunction)(void (*)(void))Lane_serve, METH_FASTCALL,
     "serve(name, data) -> the answer's JSON: call(), else fallback(name, data)"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject LaneType = {
    GC_TYPE_HEAD("_compcall", Lane,
                 "A component runtime's call face: ComponentRuntime.call's hot path."),
    .tp_init = (initproc)Lane_init,
    .tp_methods = Lane_methods,
};

int
lane_strings(void)
{
    static const struct { PyObject **s; const char *text; } all[] = {
        {&s_dict, "__dict__"}, {&s_canon, "canon"}, {&s_watch, "watch"}, {&s_limiter, "limiter"},
        {&s_refused, "refused"}, {&s_written, "written"},
        {&s_deadline, "deadline"}, {&s_refusal, "refusal"}, {&s_ends, "ends"}, {&s_c, "c"},
        {&s_catch_up, "catch_up"}, {&s_release, "release"}, {&s_waiters, "waiters"},
        {&s_notify, "notify"}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if ((*all[i].s = PyUnicode_InternFromString(all[i].text)) == NULL)
            return 0;
    return 1;
}
