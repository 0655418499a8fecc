/* A plugin's log ring in C: the part of omnicore:log.write that runs on the call path
 * (sandbox/logring.py holds the Python implementation of the same contract, used when this
 * module was not built or OMNICORE_CALLPATH=python; the log tests run on both).
 *
 * One write: two token buckets (bytes and lines, refilled from CLOCK_MONOTONIC), the line kept
 * in a ring of up to `capacity` entries and `max_bytes` bytes (a line costs sys.getsizeof of
 * its text plus LINE_OVERHEAD), and, once per batch, the ring put on the list of rings with
 * lines Python logging has not had yet. The forwarder thread (sandbox/logforward.py) takes
 * those lines with Ring.take() after the call; a line that leaves the ring before it was taken
 * is counted as missed.
 *
 * No lock: every method runs under the GIL and is atomic because it calls no Python code
 * while the ring is half updated. The only calls out are made before the first change
 * (level_number for a level given by name) or after the last one (building the tuples
 * returned by lines/since/take, which may run the garbage collector), and str.__sizeof__ and
 * str allocation, which run no Python code. The forwarder sleeps on a pthread condition with
 * the GIL released; a write wakes it only when it sleeps, so a line costs no system call.
 */
#include "_logring.h"

#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

PyObject *str_sizeof;  /* str.__sizeof__ (set by the module init, _logwake.c) */

static double
clock_s(clockid_t clock)
{
    /* Rounded as CPython's time.time() and time.monotonic() round: a line's time compares
     * with a time.time() read just before or after it. */
    struct timespec ts;
    clock_gettime(clock, &ts);
    if (ts.tv_nsec == 0)
        return (double)ts.tv_sec;
    return (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9;
}

static int
Ring_init(Ring *self, PyObject *args, PyObject *kwds)
{
    Py_ssize_t capacity, max_bytes, overhead;
    double rate, line_rate, note_every;
    int min_level;
    static char *kwlist[] = {"capacity", "max_bytes", "rate_bytes", "rate_lines",
                             "min_level", "line_overhead", "note_every", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nnddind", kwlist, &capacity, &max_bytes,
                                     &rate, &line_rate, &min_level, &overhead, &note_every))
        return -1;
    if (self->entries != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a log ring is initialised once");
        return -1;
    }
    if (capacity < 1 || capacity > (1 << 24)) {
        PyErr_Format(PyExc_ValueError, "a log ring holds 1 to 16777216 lines, not %zd",
                     capacity);
        return -1;
    }
    /* A plugin that logs little should not pay for a full ring: 1,000 slots are 32 KiB, more
     * than the rest of an idle plugin. The slots double as lines come, up to capacity. */
    self->slots = capacity < FIRST_SLOTS ? capacity : FIRST_SLOTS;
    self->entries = PyMem_Calloc((size_t)self->slots, sizeof(Entry));
    if (self->entries == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->capacity = capacity;
    self->max_bytes = max_bytes;
    self->overhead = overhead;
    self->rate = self->tokens = rate;
    self->line_rate = self->line_tokens = line_rate;
    self->min_level = min_level;
    self->note_every = note_every;
    self->refilled = clock_s(CLOCK_MONOTONIC);
    self->noted = -INFINITY;
    return 0;
}

static void
Ring_dealloc(Ring *self)
{
    for (Py_ssize_t i = 0; i < self->count; i++)
        Py_DECREF(self->entries[(self->head + i) % self->slots].message);
    PyMem_Free(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void
evict(Ring *self)
{
    Entry *e = &self->entries[self->head];
    self->bytes -= e->cost;
    Py_CLEAR(e->message);  /* a str: freeing it runs no Python code */
    self->head = (self->head + 1) % self->slots;
    self->count--;
}

static int
grow(Ring *self)
{
    Py_ssize_t n = self->slots * 2 < self->capacity ? self->slots * 2 : self->capacity;
    Entry *entries = PyMem_Calloc((size_t)n, sizeof(Entry));
    if (entries == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < self->count; i++)
        entries[i] = self->entries[(self->head + i) % self->slots];
    PyMem_Free(self->entries);
    self->entries = entries;
    self->head = 0;
    self->slots = n;
    return 0;
}

static void
keep(Ring *self, int level, PyObject *message, Py_ssize_t cost)
{
    /* Steals message. The newest line is evicted too when it alone is over max_bytes. */
    if (self->count == self->slots && !(self->slots < self->capacity && grow(self) == 0))
        evict(self);  /* full, or no memory to grow: the ring keeps the lines it has room for */
    Entry *e = &self->entries[(self->head + self->count) % self->slots];
    e->time = clock_s(CLOCK_REALTIME);
    e->level = level;
    e->message = message;
    e->cost = cost;
    self->count++;
    self->written++;
    self->bytes += cost;
    while (self->count > 0 && self->bytes > self->max_bytes)
        evict(self);
}

static Py_ssize_t
cost_of(Ring *self, PyObject *message)
{
    PyObject *size = PyObject_CallOneArg(str_sizeof, message);  /* C code: exact str */
    if (size == NULL)
        return -1;
    Py_ssize_t n = PyLong_AsSsize_t(size);
    Py_DECREF(size);
    return n < 0 ? -1 : n + self->overhead;
}

static int
level_of(PyObject *level)
{
    int overflow;
    if (!PyLong_Check(level)) {
        PyObject *num = PyObject_CallOneArg(level_number, level);  /* may raise ValueError */
        if (num == NULL)
            return -1;
        long n = PyLong_Check(num) ? PyLong_AsLong(num) : -1;
        Py_DECREF(num);
        if (n < 0 && !PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "a log level is a number 0-4 or a level name");
        return n < 0 ? -1 : (int)n;
    }
    long n = PyLong_AsLongAndOverflow(level, &overflow);
    if (overflow)
        return overflow < 0 ? 0 : 4;
    return n < 0 ? 0 : n > 4 ? 4 : (int)n;
}

static PyObject *
note_text(Ring *self, long long count)
{
    return PyUnicode_FromFormat(
        "[omnicore] %lld log line(s) dropped: over this plugin's log budget of %lld bytes/s "
        "(limits.max_log_bytes_per_s) or %lld lines/s (limits.max_log_lines_per_s)",
        count, (long long)self->rate, (long long)self->line_rate);
}

static PyObject *
Ring_write(Ring *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "write(level, message)");
        return NULL;
    }
    if (self->entries == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the log ring was not initialised (Ring.__init__)");
        return NULL;
    }
    int level = level_of(args[0]);
    if (level < 0)
        return NULL;
    if (level < self->min_level)
        Py_RETURN_TRUE;
    PyObject *message;
    if (PyUnicode_CheckExact(args[1])) {
        message = Py_NewRef(args[1]);
    } else if (PyUnicode_Check(args[1])) {
        message = PyUnicode_FromObject(args[1]);  /* a str subclass: its text, as a str */
        if (message == NULL)
            return NULL;
    } else {
        PyErr_Format(PyExc_TypeError, "a log message is a str, not %.100s",
                     Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    Py_ssize_t cost = cost_of(self, message);
    if (cost < 0) {
        Py_DECREF(message);
        return NULL;
    }
    /* Two buckets refilled together: bytes, and records (each record costs Python logging
     * and its handlers far more than its bytes). */
    double now = clock_s(CLOCK_MONOTONIC), passed = now - self->refilled;
    self->tokens = fmin(self->rate, self->tokens + passed * self->rate);
    self->line_tokens = fmin(self->line_rate, self->line_tokens + passed * self->line_rate);
    self->refilled = now;
    if (self->tokens < (double)cost || self->line_tokens < 1) {
        self->dropped++;
        self->unreported++;
        Py_DECREF(message);
        Py_RETURN_FALSE;
    }
    self->tokens -= (double)cost;
    self->line_tokens -= 1;
    /* One report per note_every at most: a plugin logging on every call at a high rate
     * stays over budget, and a note after each admitted line would be spam. */
    if (self->unreported && self->refilled - self->noted >= self->note_every) {
        PyObject *note = note_text(self, self->unreported);
        Py_ssize_t note_cost = note == NULL ? -1 : cost_of(self, note);
        if (note_cost < 0) {
            Py_XDECREF(note);
            Py_DECREF(message);
            return NULL;
        }
        self->unreported = 0;
        self->noted = self->refilled;
        keep(self, 3, note, note_cost);
    }
    keep(self, level, message, cost);
    if (!self->queued) {
        if (PyList_Append(dirty, (PyObject *)self) < 0)
            return NULL;
        self->queued = 1;
    }
    notify();
    Py_RETURN_TRUE;
}

static PyObject *
Ring_drop(Ring *self, PyObject *arg)
{
    long long lines = PyLong_AsLongLong(arg);
    if (lines == -1 && PyErr_Occurred())
        return NULL;
    if (lines > 0) {
        self->dropped += lines;
        self->unreported += lines;
    }
    Py_RETURN_NONE;
}

static PyObject *
Ring_enabled(Ring *self, PyObject *arg)
{
    int level = level_of(arg);
    if (level < 0)
        return NULL;
    return PyBool_FromLong(level >= self->min_level);
}

static Py_ssize_t
visible(Ring *self)
{
    long long hidden = self->shown - (self->written - self->count);
    return hidden > 0 ? self->count - (Py_ssize_t)hidden : self->count;
}

static PyObject *
tuples(Entry *copy, Py_ssize_t n)
{
    /* Consumes copy (its references and the block): a list of (time, level, message).
     * Allocating may run the garbage collector, hence after the ring was left consistent. */
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *t = Py_BuildValue("(diO)", copy[i].time, copy[i].level, copy[i].message);
        if (t == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, i, t);
    }
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(copy[i].message);
    PyMem_Free(copy);
    return out;
}

static PyObject *
last(Ring *self, Py_ssize_t n)
{
    /* The last n visible lines as tuples, oldest first. */
    Py_ssize_t shown = visible(self);
    if (n <= 0 || n > shown)
        n = shown;
    Entry *copy = PyMem_Malloc(sizeof(Entry) * (size_t)(n ? n : 1));
    if (copy == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        copy[i] = self->entries[(self->head + self->count - n + i) % self->slots];
        Py_INCREF(copy[i].message);
    }
    return tuples(copy, n);
}

static PyObject *
Ring_items(Ring *self, PyObject *arg)
{
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    return last(self, limit);
}

static PyObject *
Ring_since(Ring *self, PyObject *arg)
{
    long long mark = PyLong_AsLongLong(arg);
    if (mark == -1 && PyErr_Occurred())
        return NULL;
    long long n = self->written - mark;
    return n <= 0 ? PyList_New(0) : last(self, n < visible(self) ? (Py_ssize_t)n : -1);
}

static void
release_cleared(Ring *self)
{
    /* Lines cleared from view stay until the forwarder took them. */
    long long done = self->forwarded < self->shown ? self->forwarded : self->shown;
    while (self->count > 0 && self->written - self->count < done)
        evict(self);
}

static PyObject *
Ring_clear(Ring *self, PyObject *Py_UNUSED(ignored))
{
    self->shown = self->written;
    release_cleared(self);
    Py_RETURN_NONE;
}

static PyObject *
Ring_take(Ring *self, PyObject *args)
{
    /* For the forwarder: (missed, [(time, level, message)...]), the next lines Python logging
     * has not had, numbered below end, at most max_lines and (past the first) max_bytes. */
    Py_ssize_t max_lines, max_bytes;
    long long end;
    if (!PyArg_ParseTuple(args, "nnL", &max_lines, &max_bytes, &end))
        return NULL;
    long long oldest = self->written - self->count, missed = 0;
    if (self->forwarded < oldest) {
        missed = oldest - self->forwarded;
        self->forwarded = oldest;
    }
    Py_ssize_t start = (Py_ssize_t)(self->forwarded - oldest), n = 0, bytes = 0;
    while (start + n < self->count && n < max_lines && self->forwarded + n < end) {
        Entry *e = &self->entries[(self->head + start + n) % self->slots];
        if (n > 0 && bytes + e->cost > max_bytes)
            break;
        bytes += e->cost;
        n++;
    }
    Entry *copy = PyMem_Malloc(sizeof(Entry) * (size_t)(n ? n : 1));
    if (copy == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        copy[i] = self->entries[(self->head + start + i) % self->slots];
        Py_INCREF(copy[i].message);
    }
    self->forwarded += n;
    release_cleared(self);
    PyObject *lines = tuples(copy, n);
    if (lines == NULL)
        return NULL;
    PyObject *out = Py_BuildValue("(LO)", missed, lines);
    Py_DECREF(lines);
    return out;
}

static PyObject *
Ring_get_buffered(Ring *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->bytes);
}

static int
fresh(Ring *self)
{
    return self->written == 0 && self->dropped == 0;
}

/* rate_bytes and rate_lines are one getter and one setter: their closure says which of the
 * ring's two token buckets, by where its rate and tokens are in a Ring. */
typedef struct {
    const char *name;
    size_t rate, tokens;
} Bucket;

static const Bucket byte_bucket = {"rate_bytes", offsetof(Ring, rate), offsetof(Ring, tokens)};
static const Bucket line_bucket = {"rate_lines", offsetof(Ring, line_rate),
                                   offsetof(Ring, line_tokens)};

static double *
ring_double(Ring *self, size_t offset)
{
    return (double *)((char *)self + offset);
}

static PyObject *
Ring_get_rate(Ring *self, void *closure)
{
    return PyLong_FromDouble(*ring_double(self, ((const Bucket *)closure)->rate));
}

/* A rate being set: its bucket starts full at the new rate while the log has taken no line
 * yet (runtimes set it right after making the log); later changes never add a free burst.
 * -1 with an exception if `value` is not a number (or a delete). */
static int
Ring_set_rate(Ring *self, PyObject *value, void *closure)
{
    const Bucket *bucket = closure;
    double new_rate = value == NULL ? -1 : PyFloat_AsDouble(value);
    if (new_rate == -1 && (value == NULL || PyErr_Occurred())) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_AttributeError, "%s cannot be deleted", bucket->name);
        return -1;
    }
    double *tokens = ring_double(self, bucket->tokens);
    *ring_double(self, bucket->rate) = new_rate;
    *tokens = fresh(self) ? new_rate : fmin(*tokens, new_rate);
    return 0;
}

static Py_ssize_t
Ring_len(Ring *self)
{
    return visible(self);
}

static PyMethodDef Ring_methods[] = {
    {"write", (PyCFunction)(void (*)(void))Ring_write, METH_FASTCALL,
     "write(level, message) -> bool: keep one line; False when a rate budget dropped it"},
    {"drop", (PyCFunction)Ring_drop, METH_O, "count lines dropped without looking at them"},
    {"enabled", (PyCFunction)Ring_enabled, METH_O, "whether a line of this level is kept"},
    {"_items", (PyCFunction)Ring_items, METH_O, "the last n lines as tuples (all if n <= 0)"},
    {"_since", (PyCFunction)Ring_since, METH_O, "the lines after written was mark, as tuples"},
    {"clear", (PyCFunction)Ring_clear, METH_NOARGS, "forget the buffered lines"},
    {"take", (PyCFunction)Ring_take, METH_VARARGS, "the forwarder's next lines"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Ring_members[] = {
    {"written", T_LONGLONG, offsetof(Ring, written), READONLY, "lines kept so far"},
    {"dropped", T_LONGLONG, offsetof(Ring, dropped), READONLY, "lines dropped so far"},
    {"capacity", T_PYSSIZET, offsetof(Ring, capacity), READONLY, "lines kept at most"},
    {"max_bytes", T_PYSSIZET, offsetof(Ring, max_bytes), 0, "bytes kept at most"},
    {"min_level", T_INT, offsetof(Ring, min_level), 0, "lines below this level are not kept"},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Ring_getset[] = {
    {"buffered_bytes", (getter)Ring_get_buffered, NULL, "host memory the ring holds", NULL},
    {"rate_bytes", (getter)Ring_get_rate, (setter)Ring_set_rate,
     "bytes per second let through", (void *)&byte_bucket},
    {"rate_lines", (getter)Ring_get_rate, (setter)Ring_set_rate,
     "lines per second let through", (void *)&line_bucket},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Ring_as_sequence = {.sq_length = (lenfunc)Ring_len};

PyTypeObject RingType = {
    TYPE_HEAD("_logring", Ring, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
              "A plugin's log ring (see sandbox/pluginlog.py PluginLog)."),
    .tp_init = (initproc)Ring_init,
    .tp_methods = Ring_methods,
    .tp_members = Ring_members,
    .tp_getset = Ring_getset,
    .tp_as_sequence = &Ring_as_sequence,
};
