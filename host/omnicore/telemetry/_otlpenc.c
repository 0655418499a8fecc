/* omnicore.telemetry._otlpenc: ended spans' records (omnicore.telemetry._spans.Record) into
 * OTLP's protobuf bytes (an ExportTraceServiceRequest, opentelemetry-proto's trace.proto),
 * written straight into one growing buffer. The export thread's encoder (._otlp): in Python it
 * took some 24 thousand instructions a span, under the host's GIL; here a few hundred.
 *
 * What it writes is the SDK's encoder's message, field for field (tests/telemetry/test_otlp.py
 * decodes both and compares): a span's ids, trace state, parent, name, kind, times, its
 * shared attributes then its own (None values left out; a key in both, once: the span's own
 * value, in the shared one's place), status, flags with the is-remote bits. An attribute's
 * value: a str (its text, UTF-8, an unpaired surrogate replaced), a bool, an int (its low 64
 * bits, two's complement), a float, bytes, a sequence (an array of such values), a mapping (a
 * key-value list), None in an array or a mapping (an empty value), else its str(). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "structmember.h"
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* OTLP's SpanFlags: the is-remote bit says something (0x100), and the parent is remote. */
#define HAS_REMOTE 0x100u
#define IS_REMOTE 0x200u
/* Status.code ERROR, as omnicore.telemetry._spans.ERROR. */
#define STATUS_ERROR 2
#define RECORD_FIELDS 14

/* collections.abc.Sequence and Mapping: what else an attribute's value may be an array or a
 * key-value list of. */
static PyObject *sequence_abc, *mapping_abc;
/* 64, as an int: a trace id's high half is it shifted by this. */
static PyObject *sixty_four;

typedef struct {
    char *data;
    Py_ssize_t len, cap;
    /* Not NULL: the caller's memory (on its stack) that data starts in, never reallocated
     * or freed here. */
    char *fixed;
} Buf;

/* Room for `more` bytes: the buffer doubled (from 1 KiB) when short. */
static int
grow(Buf *b, Py_ssize_t more)
{
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data;
    if (b->data != NULL && b->data == b->fixed) {
        if ((data = PyMem_Malloc((size_t)cap)) != NULL)
            memcpy(data, b->data, (size_t)b->len);
    } else
        data = PyMem_Realloc(b->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static inline int
reserve(Buf *b, Py_ssize_t more)
{
    return b->len + more <= b->cap ? 0 : grow(b, more);
}

static inline int
put(Buf *b, const void *src, Py_ssize_t n)
{
    if (reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, src, (size_t)n);
    b->len += n;
    return 0;
}

static inline int
put_byte(Buf *b, unsigned char c)
{
    if (reserve(b, 1) < 0)
        return -1;
    b->data[b->len++] = (char)c;
    return 0;
}

static inline int
varint_size(uint64_t n)
{
    int size = 1;
    while (n >= 0x80) {
        n >>= 7;
        size++;
    }
    return size;
}

static inline int
put_varint(Buf *b, uint64_t n)
{
    if (reserve(b, 10) < 0)
        return -1;
    while (n >= 0x80) {
        b->data[b->len++] = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    b->data[b->len++] = (char)n;
    return 0;
}

static inline int
put_fixed64(Buf *b, unsigned char tag, uint64_t n)
{
    unsigned char out[9];
    out[0] = tag;
    for (int i = 0; i < 8; i++)
        out[1 + i] = (unsigned char)(n >> (8 * i));
    return put(b, out, 9);
}

/* A length-delimited field is opened with its tag and a one-byte length, and closed once its
 * payload is written: a payload of 128 bytes or more is moved up for its longer length. */
static inline Py_ssize_t
open_field(Buf *b, unsigned char tag)
{
    if (reserve(b, 2) < 0)
        return -1;
    b->data[b->len++] = (char)tag;
    b->data[b->len++] = 0;
    return b->len;
}

static int
close_field(Buf *b, Py_ssize_t start)
{
    uint64_t n = (uint64_t)(b->len - start);
    if (n < 0x80) {
        b->data[start - 1] = (char)n;
        return 0;
    }
    int extra = varint_size(n) - 1;
    if (reserve(b, extra) < 0)
        return -1;
    memmove(b->data + start + extra, b->data + start, (size_t)n);
    char *p = b->data + start - 1;
    while (n >= 0x80) {
        *p++ = (char)((n & 0x7F) | 0x80);
        n >>= 7;
    }
    *p = (char)n;
    b->len += extra;
    return 0;
}

static inline int
put_field(Buf *b, unsigned char tag, const char *payload, Py_ssize_t n)
{
    if (put_byte(b, tag) < 0 || put_varint(b, (uint64_t)n) < 0)
        return -1;
    return put(b, payload, n);
}

/* A str as a length-delimited field, in UTF-8 (an unpaired surrogate as '?', as Python's
 * encode("utf-8", "replace") writes it). */
static int
put_text(Buf *b, unsigned char tag, PyObject *text)
{
    if (PyUnicode_IS_ASCII(text))
        return put_field(b, tag, (const char *)PyUnicode_DATA(text),
                         PyUnicode_GET_LENGTH(text));
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &n);
    if (utf8 != NULL)
        return put_field(b, tag, utf8, n);
    PyErr_Clear();
    PyObject *encoded = PyUnicode_AsEncodedString(text, "utf-8", "replace");
    if (encoded == NULL)
        return -1;
    int rc = put_field(b, tag, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    Py_DECREF(encoded);
    return rc;
}

/* str(value) as a length-delimited field. */
static int
put_str_of(Buf *b, unsigned char tag, PyObject *value)
{
    PyObject *text = PyObject_Str(value);
    if (text == NULL)
        return -1;
    int rc = put_text(b, tag, text);
    Py_DECREF(text);
    return rc;
}

/* An AnyValue's fields. */
static int put_attribute(Buf *b, unsigned char tag, PyObject *key, PyObject *value);

static int
put_value(Buf *b, PyObject *value)
{
    if (PyUnicode_CheckExact(value))
        return put_text(b, 0x0A, value);
    if (value == Py_None)
        return 0;  /* (an array's or a key-value list's item: an empty value) */
    if (value == Py_True || value == Py_False) {
        unsigned char out[2] = {0x10, value == Py_True};
        return put(b, out, 2);
    }
    if (PyLong_Check(value)) {
        unsigned long long n = PyLong_AsUnsignedLongLongMask(value);
        if (n == (unsigned long long)-1 && PyErr_Occurred())
            return -1;
        if (put_byte(b, 0x18) < 0)
            return -1;
        return put_varint(b, (uint64_t)n);
    }
    if (PyFloat_Check(value)) {
        unsigned char out[9] = {0x21};
        if (PyFloat_Pack8(PyFloat_AS_DOUBLE(value), (char *)out + 1, 1) < 0)
            return -1;
        return put(b, out, 9);
    }
    if (PyBytes_Check(value))
        return put_field(b, 0x3A, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    if (PyUnicode_Check(value))
        return put_text(b, 0x0A, value);  /* (a subclass: its text, not its str()) */
    int is_sequence = PyList_Check(value) || PyTuple_Check(value);
    if (!is_sequence) {
        is_sequence = PyObject_IsInstance(value, sequence_abc);
        if (is_sequence < 0)
            return -1;
    }
    int is_mapping = 0;
    if (!is_sequence) {
        is_mapping = PyDict_Check(value) ? 1 : PyObject_IsInstance(value, mapping_abc);
        if (is_mapping < 0)
            return -1;
        if (!is_mapping)
            return put_str_of(b, 0x0A, value);
    }
    /* (an array holding itself: a RecursionError, as Python's own recursion would raise) */
    if (Py_EnterRecursiveCall(" while encoding an attribute's array"))
        return -1;
    /* A tuple of the items (a mapping's: its (key, value) pairs), which holds them: a list's
     * own items would be read after an item's str() (Python code) emptied it. */
    PyObject *items = NULL;
    if (is_mapping) {
        PyObject *pairs = PyMapping_Items(value);
        if (pairs != NULL) {
            items = PyList_AsTuple(pairs);
            Py_DECREF(pairs);
        }
    } else
        items = PySequence_Tuple(value);
    if (items == NULL) {
        Py_LeaveRecursiveCall();
        return -1;
    }
    int rc = -1;
    /* AnyValue's array_value (5) of AnyValues, or kvlist_value (6) of KeyValues (field 1) */
    Py_ssize_t outer = open_field(b, is_mapping ? 0x32 : 0x2A);
    if (outer < 0)
        goto done;
    Py_ssize_t count = PyTuple_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i);
        if (is_mapping) {
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
                PyErr_SetString(PyExc_TypeError, "a mapping's items must be pairs");
                goto done;
            }
            if (put_attribute(b, 0x0A, PyTuple_GET_ITEM(item, 0),
                              PyTuple_GET_ITEM(item, 1)) < 0)
                goto done;
            continue;
        }
        Py_ssize_t at = open_field(b, 0x0A);
        if (at < 0 || put_value(b, item) < 0 || close_field(b, at) < 0)
            goto done;
    }
    rc = close_field(b, outer);
done:
    Py_DECREF(items);
    Py_LeaveRecursiveCall();
    return rc;
}

/* One KeyValue as field `tag` of its message. */
static int
put_attribute(Buf *b, unsigned char tag, PyObject *key, PyObject *value)
{
    Py_ssize_t kv = open_field(b, tag);
    if (kv < 0)
        return -1;
    if ((PyUnicode_Check(key) ? put_text(b, 0x0A, key) : put_str_of(b, 0x0A, key)) < 0)
        return -1;
    Py_ssize_t any = open_field(b, 0x12);
    if (any < 0 || put_value(b, value) < 0 || close_field(b, any) < 0)
        return -1;
    return close_field(b, kv);
}

/* `items` (a mapping) as the repeated KeyValue field `tag`, None values left out. */
static int
put_attributes(Buf *b, unsigned char tag, PyObject *items)
{
    if (PyDict_CheckExact(items)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(items, &pos, &key, &value)) {
            if (value == Py_None)
                continue;
            /* (the key and value borrowed: nothing called here runs Python code that could
             * change the dict, but a str() of an odd value might; hold them) */
            Py_INCREF(key);
            Py_INCREF(value);
            int rc = put_attribute(b, tag, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (rc < 0)
                return -1;
        }
        return 0;
    }
    PyObject *pairs = PyMapping_Items(items);
    if (pairs == NULL)
        return -1;
    Py_ssize_t count = PyList_GET_SIZE(pairs);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(pairs, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(pairs);
            PyErr_SetString(PyExc_TypeError, "a mapping's items must be pairs");
            return -1;
        }
        PyObject *value = PyTuple_GET_ITEM(pair, 1);
        if (value != Py_None && put_attribute(b, tag, PyTuple_GET_ITEM(pair, 0), value) < 0) {
            Py_DECREF(pairs);
            return -1;
        }
    }
    Py_DECREF(pairs);
    return 0;
}

/* A span's shared attributes (Span.shared: one mapping a route's or a plugin version's spans
 * all hold, which nobody changes), encoded, by the mapping's identity: a slot by its address,
 * the mapping held there (so no other takes its address while it is cached). */
#define SHARED_SLOTS 256
/* Keys of spans' own attributes a cached shared mapping was seen not to set (str keys, held):
 * most spans of a kind set the same few, and each was looked up in the shared mapping, span
 * after span, to learn again that it is not there. */
#define ABSENT_KEYS 8
static struct {
    PyObject *mapping, *encoded;
    PyObject *absent[ABSENT_KEYS];
} shared_cache[SHARED_SLOTS];

static inline size_t
slot_of(PyObject *shared)
{
    return ((uintptr_t)shared >> 4) % SHARED_SLOTS;
}

/* `key` (a str) known not to be set by the cached `shared`, if there is room (a reference
 * taken). */
static void
remember_absent(size_t slot, PyObject *shared, PyObject *key)
{
    if (shared_cache[slot].mapping != shared || !PyUnicode_CheckExact(key))
        return;
    for (int i = 0; i < ABSENT_KEYS; i++) {
        if (shared_cache[slot].absent[i] == key)
            return;
        if (shared_cache[slot].absent[i] == NULL) {
            shared_cache[slot].absent[i] = Py_NewRef(key);
            return;
        }
    }
}

/* Whether `own` sets a key `shared` sets too (1), or not (0); -1 on an error (a mapping not
 * a dict: two exact dicts, every span's case, go through put_shared_then_own). */
static int
overlaps(PyObject *shared, PyObject *own)
{
    PyObject *keys = PyMapping_Keys(own);
    if (keys == NULL)
        return -1;
    int found = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys) && found == 0; i++)
        found = PySequence_Contains(shared, PyList_GET_ITEM(keys, i));
    Py_DECREF(keys);
    return found;
}

static int
put_shared(Buf *b, PyObject *shared)
{
    size_t slot = slot_of(shared);
    if (shared_cache[slot].mapping == shared) {
        PyObject *encoded = shared_cache[slot].encoded;
        return put(b, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
    }
    Py_ssize_t start = b->len;
    if (put_attributes(b, 0x4A, shared) < 0)
        return -1;
    PyObject *encoded = PyBytes_FromStringAndSize(b->data + start, b->len - start);
    if (encoded == NULL)
        return -1;
    PyObject *old_mapping = shared_cache[slot].mapping, *old_encoded = shared_cache[slot].encoded;
    PyObject *old_absent[ABSENT_KEYS];
    memcpy(old_absent, shared_cache[slot].absent, sizeof old_absent);
    memset(shared_cache[slot].absent, 0, sizeof old_absent);
    Py_INCREF(shared);
    shared_cache[slot].mapping = shared;
    shared_cache[slot].encoded = encoded;
    Py_XDECREF(old_mapping);
    Py_XDECREF(old_encoded);
    for (int i = 0; i < ABSENT_KEYS; i++)
        Py_XDECREF(old_absent[i]);
    return 0;
}

/* A span's shared attributes (both exact dicts), then its own, in one pass over its own: each
 * key looked up in `shared` (or known absent) as it is written. 1 (nothing written) when one
 * of them is a key `shared` sets too: the caller writes the merged attributes instead. */
static int
put_shared_then_own(Buf *b, PyObject *shared, PyObject *own)
{
    Py_ssize_t mark = b->len;
    if (put_shared(b, shared) < 0)
        return -1;
    size_t slot = slot_of(shared);
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(own, &pos, &key, &value)) {
        int known = 0;  /* (absent, as seen before) */
        if (shared_cache[slot].mapping == shared)
            for (int i = 0; i < ABSENT_KEYS && !known; i++)
                known = shared_cache[slot].absent[i] == key;
        if (!known) {
            Py_INCREF(key);
            int found = PyDict_Contains(shared, key);
            if (found == 0)
                remember_absent(slot, shared, key);
            Py_DECREF(key);
            if (found < 0)
                return -1;
            if (found) {
                b->len = mark;
                return 1;
            }
        }
        if (value == Py_None)
            continue;
        /* (held: a str() of an odd value runs Python code) */
        Py_INCREF(key);
        Py_INCREF(value);
        int rc = put_attribute(b, 0x4A, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static int
as_u64(PyObject *n, uint64_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLongMask(n);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* One span (a Record) as ScopeSpans' field 2. */
static int
put_span(Buf *b, PyObject *r)
{
    if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != RECORD_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "a span's record must be a tuple of 14");
        return -1;
    }
    PyObject *trace_id = PyTuple_GET_ITEM(r, 0), *span_id = PyTuple_GET_ITEM(r, 1),
             *parent_id = PyTuple_GET_ITEM(r, 2), *name = PyTuple_GET_ITEM(r, 3),
             *kind = PyTuple_GET_ITEM(r, 4), *start_ns = PyTuple_GET_ITEM(r, 5),
             *end_ns = PyTuple_GET_ITEM(r, 6), *own = PyTuple_GET_ITEM(r, 7),
             *shared = PyTuple_GET_ITEM(r, 8), *status = PyTuple_GET_ITEM(r, 9),
             *description = PyTuple_GET_ITEM(r, 10), *flags = PyTuple_GET_ITEM(r, 11),
             *remote = PyTuple_GET_ITEM(r, 12), *state = PyTuple_GET_ITEM(r, 13);
    unsigned char ids[2 + 16 + 2 + 8] = {0x0A, 0x10};
    if (!PyLong_Check(trace_id)) {
        PyErr_SetString(PyExc_TypeError, "a span's trace id must be an int");
        return -1;
    }
    /* the trace id's high and low 64 bits, big-endian (public API: no _PyLong_AsByteArray,
     * which is no faster here) */
    uint64_t high = 0, low = 0, span = 0, parent = 0, start = 0, end = 0, kind_n = 0,
             flags_n = 0;
    PyObject *shifted = PyNumber_Rshift(trace_id, sixty_four);
    if (shifted == NULL)
        return -1;
    int rc = as_u64(shifted, &high);
    Py_DECREF(shifted);
    if (rc == 0)
        rc = as_u64(trace_id, &low);
    if (rc < 0 ||
        as_u64(span_id, &span) < 0 || as_u64(parent_id, &parent) < 0 ||
        as_u64(start_ns, &start) < 0 || as_u64(end_ns, &end) < 0 ||
        as_u64(kind, &kind_n) < 0 || as_u64(flags, &flags_n) < 0)
        return -1;
    for (int i = 0; i < 8; i++) {
        ids[2 + i] = (unsigned char)(high >> (56 - 8 * i));
        ids[10 + i] = (unsigned char)(low >> (56 - 8 * i));
    }
    ids[18] = 0x12;
    ids[19] = 0x08;
    for (int i = 0; i < 8; i++)
        ids[20 + i] = (unsigned char)(span >> (56 - 8 * i));
    Py_ssize_t body = open_field(b, 0x12);
    if (body < 0 || put(b, ids, sizeof ids) < 0)
        return -1;
    if (state != Py_None) {
        int truthy = PyObject_IsTrue(state);
        if (truthy < 0 || (truthy && put_str_of(b, 0x1A, state) < 0))
            return -1;
    }
    if (parent) {
        unsigned char out[10] = {0x22, 0x08};
        for (int i = 0; i < 8; i++)
            out[2 + i] = (unsigned char)(parent >> (56 - 8 * i));
        if (put(b, out, 10) < 0)
            return -1;
    }
    if ((PyUnicode_Check(name) ? put_text(b, 0x2A, name) : put_str_of(b, 0x2A, name)) < 0 ||
        put_byte(b, 0x30) < 0 || put_varint(b, kind_n) < 0 ||
        put_fixed64(b, 0x39, start) < 0 || put_fixed64(b, 0x41, end) < 0)
        return -1;
    if (shared == Py_None) {
        if (put_attributes(b, 0x4A, own) < 0)
            return -1;
    } else {
        int both;
        if (PyDict_CheckExact(shared) && PyDict_CheckExact(own))
            both = put_shared_then_own(b, shared, own);  /* (every span's case: one pass) */
        else {
            both = overlaps(shared, own);
            if (both == 0 && (put_shared(b, shared) < 0 || put_attributes(b, 0x4A, own) < 0))
                return -1;
        }
        if (both < 0)
            return -1;
        if (both) {
            /* A key the span sets that its shared attributes set too: once, the span's
             * value in the shared one's place, as the SDK's merged attributes send it. */
            PyObject *merged = PyDict_New();
            if (merged == NULL)
                return -1;
            int rc = (PyDict_Update(merged, shared) < 0 || PyDict_Update(merged, own) < 0 ||
                      put_attributes(b, 0x4A, merged) < 0) ? -1 : 0;
            Py_DECREF(merged);
            if (rc < 0)
                return -1;
        }
    }
    long code = PyLong_AsLong(status);
    if (code == -1 && PyErr_Occurred())
        return -1;
    if (code == STATUS_ERROR) {
        Py_ssize_t st = open_field(b, 0x7A);
        if (st < 0)
            return -1;
        if (description != Py_None) {
            int truthy = PyObject_IsTrue(description);
            if (truthy < 0 || (truthy && put_str_of(b, 0x12, description) < 0))
                return -1;
        }
        unsigned char out[2] = {0x18, STATUS_ERROR};
        if (put(b, out, 2) < 0 || close_field(b, st) < 0)
            return -1;
    } else {
        unsigned char out[2] = {0x7A, 0x00};
        if (put(b, out, 2) < 0)
            return -1;
    }
    int is_remote = PyObject_IsTrue(remote);
    if (is_remote < 0)
        return -1;
    uint32_t bits = HAS_REMOTE | (uint32_t)(flags_n & 0xFF) | (is_remote ? IS_REMOTE : 0);
    unsigned char out[6] = {0x85, 0x01, (unsigned char)bits, (unsigned char)(bits >> 8),
                            (unsigned char)(bits >> 16), (unsigned char)(bits >> 24)};
    if (put(b, out, 6) < 0)
        return -1;
    return close_field(b, body);
}

/* One span (a Record) as ScopeSpans' field 2, in bytes of its own: what request() puts as it
 * is. */
static PyObject *
span_bytes(PyObject *r)
{
    char small[512];
    Buf b = {small, 0, sizeof small, small};
    PyObject *out = NULL;
    if (put_span(&b, r) == 0)
        out = PyBytes_FromStringAndSize(b.data, b.len);
    if (b.data != small)
        PyMem_Free(b.data);
    return out;
}

/* A span's bytes from span_bytes, put as they are: refused (ValueError) unless they are one
 * whole ScopeSpans field 2, its tag and a length that is the rest. */
static int
put_encoded(Buf *b, PyObject *encoded)
{
    const unsigned char *at = (const unsigned char *)PyBytes_AS_STRING(encoded);
    Py_ssize_t n = PyBytes_GET_SIZE(encoded), i = 1;
    uint64_t length = 0;
    int shift = 0;
    if (n < 2 || at[0] != 0x12)
        goto bad;
    for (;; i++, shift += 7) {
        if (i >= n || shift > 28)
            goto bad;
        length |= (uint64_t)(at[i] & 0x7F) << shift;
        if (!(at[i] & 0x80))
            break;
    }
    if (length != (uint64_t)(n - i - 1))
        goto bad;
    return put(b, at, n);
bad:
    PyErr_SetString(PyExc_ValueError, "a span's bytes must be one ScopeSpans span field "
                    "(from span())");
    return -1;
}

/* -- span contexts ------------------------------------------------------------------------
 * omnicore.telemetry._spans.Parent and new_context, in C: a context is made for every request
 * and plugin call, traced or sampled out. In Python one cost some 4-5 thousand instructions
 * (a class's __init__ frame, and random.getrandbits at ~900 a draw: a word array allocated,
 * filled and made an int); here a few hundred. The fields and what they hold are the Python
 * class's (the slots of _spans.Parent, read and written by name). */

typedef struct {
    PyObject_HEAD
    PyObject *trace_id, *span_id, *flags, *state, *remote, *attributes;
} ParentObject;

static PyTypeObject ParentType;

static PyObject *
parent_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"trace_id", "span_id", "flags", "state", "remote", "attributes",
                            NULL};
    PyObject *trace_id, *span_id, *flags, *state, *remote = Py_True, *attributes = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|OO:Parent", names, &trace_id, &span_id,
                                     &flags, &state, &remote, &attributes))
        return NULL;
    ParentObject *self = (ParentObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->trace_id = Py_NewRef(trace_id);
    self->span_id = Py_NewRef(span_id);
    self->flags = Py_NewRef(flags);
    self->state = Py_NewRef(state);
    self->remote = Py_NewRef(remote);
    self->attributes = Py_NewRef(attributes);
    return (PyObject *)self;
}

static int
parent_traverse(ParentObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->trace_id);
    Py_VISIT(self->span_id);
    Py_VISIT(self->flags);
    Py_VISIT(self->state);
    Py_VISIT(self->remote);
    Py_VISIT(self->attributes);
    return 0;
}

static int
parent_clear(ParentObject *self)
{
    Py_CLEAR(self->trace_id);
    Py_CLEAR(self->span_id);
    Py_CLEAR(self->flags);
    Py_CLEAR(self->state);
    Py_CLEAR(self->remote);
    Py_CLEAR(self->attributes);
    return 0;
}

static void
parent_dealloc(ParentObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, parent_dealloc)
    parent_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
    Py_TRASHCAN_END
}

static PyMemberDef parent_members[] = {
    {"trace_id", T_OBJECT_EX, offsetof(ParentObject, trace_id), 0, NULL},
    {"span_id", T_OBJECT_EX, offsetof(ParentObject, span_id), 0, NULL},
    {"flags", T_OBJECT_EX, offsetof(ParentObject, flags), 0, NULL},
    {"state", T_OBJECT_EX, offsetof(ParentObject, state), 0, NULL},
    {"remote", T_OBJECT_EX, offsetof(ParentObject, remote), 0, NULL},
    {"attributes", T_OBJECT_EX, offsetof(ParentObject, attributes), 0,
     "A span of this process made current without a Span (a plugin call's): its own\n"
     "attributes, which what runs inside it may add to (count); None for a context alone."},
    {NULL},
};

PyDoc_STRVAR(parent_doc,
"Parent(trace_id, span_id, flags, state, remote=True, attributes=None)\n\n"
"A span context: from elsewhere (a W3C traceparent, a stored job's, the embedding\n"
"application's own OpenTelemetry span), or that of a span of this process made current\n"
"without a Span (omnicore.telemetry._spans.Parent: its Python twin, where this is not built).");

static PyTypeObject ParentType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omnicore.telemetry._spans.Parent",
    .tp_basicsize = sizeof(ParentObject),
    .tp_dealloc = (destructor)parent_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = parent_doc,
    .tp_traverse = (traverseproc)parent_traverse,
    .tp_clear = (inquiry)parent_clear,
    .tp_members = parent_members,
    .tp_new = parent_new,
};

/* Span ids and trace ids: xoshiro256** (as random.getrandbits, not a cryptographic generator:
 * ids are to be unique, not secret), seeded from the kernel's random source, and again in a
 * forked child (which would draw its parent's ids). */
static uint64_t rng[4];

static void
seed_rng(void)
{
    uint64_t s[4] = {0};
    if (getrandom(s, sizeof s, 0) != (ssize_t)sizeof s) {
        /* (no getrandom: the time, the process and the old state, spread by splitmix64) */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
                     ((uint64_t)getpid() << 32) ^ rng[0] ^ rng[3];
        for (int i = 0; i < 4; i++) {
            uint64_t z = (x += 0x9E3779B97F4A7C15u);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
            s[i] = z ^ (z >> 31);
        }
    }
    if (!(s[0] | s[1] | s[2] | s[3]))
        s[0] = 1;  /* (the one state xoshiro never leaves) */
    memcpy(rng, s, sizeof rng);
}

static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* The next 64 bits (under the GIL: one caller at a time). */
static inline uint64_t
draw(void)
{
    uint64_t out = rotl(rng[1] * 5, 7) * 9, t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return out;
}

/* A 128-bit id as an int, from its halves. */
static PyObject *
int_of(uint64_t high, uint64_t low)
{
    if (high == 0)
        return PyLong_FromUnsignedLongLong(low);
    unsigned char le[16];
    for (int i = 0; i < 8; i++) {
        le[i] = (unsigned char)(low >> (8 * i));
        le[8 + i] = (unsigned char)(high >> (8 * i));
    }
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromUnsignedNativeBytes(le, 16, Py_ASNATIVEBYTES_LITTLE_ENDIAN);
#else
    return _PyLong_FromByteArray(le, 16, 1, 0);
#endif
}

static PyObject *str_bound, *str_parent_based, *str_trace_id, *str_span_id, *str_flags,
    *str_state, *str_attributes;
static PyObject *two_to_64, *one;
/* A sampler's bound (an int in [0, 2**64]) as the C side reads it: the last one seen, held
 * (so no other int takes its address while it is). */
static PyObject *seen_bound;
static uint64_t seen_cut;
static int seen_all;

/* Whether a trace whose id's low 64 bits are `low` is kept under `bound` (low < bound):
 * 1, 0, or -1 on an error. */
static int
under(PyObject *bound, uint64_t low)
{
    if (bound != seen_bound) {
        if (!PyLong_Check(bound)) {
            PyErr_SetString(PyExc_TypeError, "a sampler's bound must be an int");
            return -1;
        }
        int all = PyObject_RichCompareBool(bound, two_to_64, Py_GE);
        if (all < 0)
            return -1;
        uint64_t cut = 0;
        if (!all && Py_SIZE(bound) > 0) {  /* (0 and a negative bound keep nothing) */
            cut = PyLong_AsUnsignedLongLong(bound);
            if (cut == (uint64_t)-1 && PyErr_Occurred())
                return -1;
        }
        Py_XSETREF(seen_bound, Py_NewRef(bound));
        seen_cut = cut;
        seen_all = all;
    }
    return seen_all || low < seen_cut;
}

PyDoc_STRVAR(context_doc,
"context(parent, sampler) -> Parent\n\n"
"A new span's context (omnicore.telemetry._spans.new_context), the child of ``parent`` (a\n"
"Parent, a Span, or None: a new trace): its ids, and kept (flags) as ``sampler`` says.");

static PyObject *
context(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "context(parent, sampler)");
        return NULL;
    }
    PyObject *parent = args[0], *sampler = args[1];
    PyObject *bound = PyObject_GetAttr(sampler, str_bound);
    if (bound == NULL)
        return NULL;
    PyObject *trace_id = NULL, *flags = NULL, *state = NULL, *out = NULL;
    int kept;
    if (parent == Py_None) {
        uint64_t high = draw(), low = draw();
        if (!(high | low))
            low = 1;
        if ((kept = under(bound, low)) < 0 || (trace_id = int_of(high, low)) == NULL)
            goto done;
        state = Py_NewRef(Py_None);
    } else {
        if (Py_IS_TYPE(parent, &ParentType)) {
            ParentObject *p = (ParentObject *)parent;
            if (p->trace_id == NULL || p->flags == NULL || p->state == NULL) {
                PyErr_SetString(PyExc_AttributeError, "a parent without its ids");
                goto done;
            }
            trace_id = Py_NewRef(p->trace_id);
            flags = Py_NewRef(p->flags);
            state = Py_NewRef(p->state);
        } else if ((trace_id = PyObject_GetAttr(parent, str_trace_id)) == NULL ||
                   (flags = PyObject_GetAttr(parent, str_flags)) == NULL ||
                   (state = PyObject_GetAttr(parent, str_state)) == NULL)
            goto done;
        PyObject *based = PyObject_GetAttr(sampler, str_parent_based);
        if (based == NULL)
            goto done;
        int parent_based = PyObject_IsTrue(based);
        Py_DECREF(based);
        if (parent_based < 0)
            goto done;
        if (parent_based) {
            long bits = PyLong_AsLong(flags);  /* (flags & 0x01, as Python's int would) */
            if (bits == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                PyObject *low_bit = PyNumber_And(flags, one);
                if (low_bit == NULL)
                    goto done;
                kept = PyObject_IsTrue(low_bit);
                Py_DECREF(low_bit);
                if (kept < 0)
                    goto done;
            } else
                kept = (int)(bits & 0x01);
        } else {
            unsigned long long low = PyLong_AsUnsignedLongLongMask(trace_id);
            if (low == (unsigned long long)-1 && PyErr_Occurred())
                goto done;
            if ((kept = under(bound, (uint64_t)low)) < 0)
                goto done;
        }
    }
    uint64_t span = draw();
    PyObject *span_id = PyLong_FromUnsignedLongLong(span ? span : 1);
    if (span_id == NULL)
        goto done;
    ParentObject *made = PyObject_GC_New(ParentObject, &ParentType);
    if (made == NULL) {
        Py_DECREF(span_id);
        goto done;
    }
    made->trace_id = trace_id;
    made->span_id = span_id;
    made->flags = PyLong_FromLong(kept);  /* (0 and 1: the interpreter's own, no allocation) */
    made->state = state;
    made->remote = Py_NewRef(Py_False);
    made->attributes = Py_NewRef(Py_None);
    trace_id = state = NULL;
    PyObject_GC_Track(made);
    out = (PyObject *)made;
done:
    Py_DECREF(bound);
    Py_XDECREF(trace_id);
    Py_XDECREF(flags);
    Py_XDECREF(state);
    return out;
}

PyDoc_STRVAR(ended_doc,
"ended(context, parent, name, kind, start_ns, attributes, shared, status, description)\n"
"-> Record\n\n"
"A span ended now, made without a Span (a request's, a plugin call's): its record as the\n"
"export queue holds it (omnicore.telemetry._spans.ended), of its ``context`` (a Parent: ids,\n"
"flags, trace state) and ``parent`` (a Parent, a Span or None).");

static PyObject *
ended(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "ended(context, parent, name, kind, start_ns, "
                        "attributes, shared, status, description)");
        return NULL;
    }
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    PyObject *context = args[0], *parent = args[1];
    PyObject *record = PyTuple_New(RECORD_FIELDS);
    if (record == NULL)
        return NULL;
    PyObject *end_ns = PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    if (end_ns == NULL)
        goto fail;
    PyTuple_SET_ITEM(record, 6, end_ns);
    if (Py_IS_TYPE(context, &ParentType)) {
        ParentObject *c = (ParentObject *)context;
        if (c->trace_id == NULL || c->span_id == NULL || c->flags == NULL || c->state == NULL) {
            PyErr_SetString(PyExc_AttributeError, "a context without its ids");
            goto fail;
        }
        PyTuple_SET_ITEM(record, 0, Py_NewRef(c->trace_id));
        PyTuple_SET_ITEM(record, 1, Py_NewRef(c->span_id));
        PyTuple_SET_ITEM(record, 11, Py_NewRef(c->flags));
        PyTuple_SET_ITEM(record, 13, Py_NewRef(c->state));
    } else {
        PyObject *got;
        if ((got = PyObject_GetAttr(context, str_trace_id)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(record, 0, got);
        if ((got = PyObject_GetAttr(context, str_span_id)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(record, 1, got);
        if ((got = PyObject_GetAttr(context, str_flags)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(record, 11, got);
        if ((got = PyObject_GetAttr(context, str_state)) == NULL)
            goto fail;
        PyTuple_SET_ITEM(record, 13, got);
    }
    PyObject *parent_id, *remote = Py_False;
    if (parent == Py_None)
        parent_id = PyLong_FromLong(0);
    else if (Py_IS_TYPE(parent, &ParentType)) {
        ParentObject *p = (ParentObject *)parent;
        if (p->span_id == NULL || p->remote == NULL) {
            PyErr_SetString(PyExc_AttributeError, "a parent without its ids");
            goto fail;
        }
        parent_id = Py_NewRef(p->span_id);
        remote = p->remote;
    } else  /* (a Span: never remote) */
        parent_id = PyObject_GetAttr(parent, str_span_id);
    if (parent_id == NULL)
        goto fail;
    PyTuple_SET_ITEM(record, 2, parent_id);
    PyTuple_SET_ITEM(record, 12, Py_NewRef(remote));
    static const int from[] = {3, 4, 5, 7, 8, 9, 10};  /* name ... description */
    for (int i = 0; i < 7; i++)
        PyTuple_SET_ITEM(record, from[i], Py_NewRef(args[2 + i]));
    return record;
fail:
    Py_DECREF(record);
    return NULL;
}

/* -- the export queue's sink ---------------------------------------------------------------
 * omnicore.telemetry._spans.Batcher.put, in C: every request's and plugin call's record goes
 * through it (two Python frames, _sdk.queue's and put's, some 2 thousand instructions a span;
 * here a few hundred). Under the GIL throughout but for the rare wake and drop: two threads'
 * records cannot pass a full batch unseen by both. */

typedef struct {
    PyObject_HEAD
    PyObject *queue, *append, *wake, *drop;
    Py_ssize_t max_queue, batch;
    /* Queue a record's encoded bytes (span_bytes), not the record. */
    int encode;
    vectorcallfunc vectorcall;
} SinkObject;

static PyObject *str_append, *str_is_set, *str_set, *str_full, *str_unencodable;

static PyObject *sink_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames);

static PyObject *
sink_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"queue", "max_queue", "batch", "wake", "drop", "encode", NULL};
    PyObject *queue, *wake, *drop;
    Py_ssize_t max_queue, batch;
    int encode = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnnOO|$p:Sink", names, &queue, &max_queue,
                                     &batch, &wake, &drop, &encode))
        return NULL;
    PyObject *append = PyObject_GetAttr(queue, str_append);
    if (append == NULL)
        return NULL;
    SinkObject *self = (SinkObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(append);
        return NULL;
    }
    self->queue = Py_NewRef(queue);
    self->append = append;
    self->wake = Py_NewRef(wake);
    self->drop = Py_NewRef(drop);
    self->max_queue = max_queue;
    self->batch = batch;
    self->encode = encode;
    self->vectorcall = (vectorcallfunc)sink_vectorcall;
    return (PyObject *)self;
}

/* The span's record, or (encode) its bytes; NULL and no error when it cannot be encoded:
 * dropped, counted and said (drop(1, 'unencodable', error)), never raised, since this runs
 * on the request's or the call's path, which a span's attribute (an array holding itself, a
 * value whose str() raises) must not fail. (Queued as a record, it failed the export
 * thread's whole batch.) */
static PyObject *
sink_item(SinkObject *self, PyObject *record, int *failed)
{
    *failed = 0;
    if (!self->encode)
        return Py_NewRef(record);
    PyObject *encoded = span_bytes(record);
    if (encoded != NULL)
        return encoded;
    PyObject *kind, *error, *trace;
    PyErr_Fetch(&kind, &error, &trace);
    PyErr_NormalizeException(&kind, &error, &trace);
    Py_XDECREF(kind);
    Py_XDECREF(trace);
    PyObject *one = PyLong_FromLong(1);
    if (one == NULL) {
        Py_XDECREF(error);
        *failed = 1;
        return NULL;
    }
    PyObject *call[3] = {one, str_unencodable, error ? error : Py_None};
    PyObject *done = PyObject_Vectorcall(self->drop, call, 3, NULL);
    Py_DECREF(one);
    Py_XDECREF(error);
    if (done == NULL)
        *failed = 1;
    Py_XDECREF(done);
    return NULL;
}

/* drop(1, "full"), and None. */
static PyObject *
sink_full(SinkObject *self)
{
    PyObject *one = PyLong_FromLong(1);
    if (one == NULL)
        return NULL;
    PyObject *call[2] = {one, str_full};
    PyObject *done = PyObject_Vectorcall(self->drop, call, 2, NULL);
    Py_DECREF(one);
    if (done == NULL)
        return NULL;
    Py_DECREF(done);
    Py_RETURN_NONE;
}

static PyObject *
sink_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    SinkObject *self = (SinkObject *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "a sink takes one record");
        return NULL;
    }
    /* A full queue drops the span before it is encoded: a collector away must not cost
     * every call an encoding thrown away. Encoding may run Python code (an attribute's
     * str()), which lets other threads in, so the bound is read again after it: that read
     * and the append run no Python code, and no thread can pass the bound between them. */
    Py_ssize_t n = PyObject_Size(self->queue);
    if (n < 0)
        return NULL;
    if (n >= self->max_queue)
        return sink_full(self);
    int failed;
    PyObject *item = sink_item(self, args[0], &failed);
    if (item == NULL) {
        if (failed)
            return NULL;
        Py_RETURN_NONE;
    }
    if ((n = PyObject_Size(self->queue)) < 0) {
        Py_DECREF(item);
        return NULL;
    }
    if (n >= self->max_queue) {
        Py_DECREF(item);
        return sink_full(self);
    }
    PyObject *done = PyObject_CallOneArg(self->append, item);
    Py_DECREF(item);
    if (done == NULL)
        return NULL;
    Py_DECREF(done);
    if ((n = PyObject_Size(self->queue)) < 0)
        return NULL;
    if (n >= self->batch) {  /* (at a full batch or past one, as put) */
        PyObject *set = PyObject_CallMethodNoArgs(self->wake, str_is_set);
        if (set == NULL)
            return NULL;
        int is_set = PyObject_IsTrue(set);
        Py_DECREF(set);
        if (is_set < 0)
            return NULL;
        if (!is_set) {
            if ((done = PyObject_CallMethodNoArgs(self->wake, str_set)) == NULL)
                return NULL;
            Py_DECREF(done);
        }
    }
    Py_RETURN_NONE;
}

static int
sink_traverse(SinkObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->queue);
    Py_VISIT(self->append);
    Py_VISIT(self->wake);
    Py_VISIT(self->drop);
    return 0;
}

static int
sink_clear(SinkObject *self)
{
    Py_CLEAR(self->queue);
    Py_CLEAR(self->append);
    Py_CLEAR(self->wake);
    Py_CLEAR(self->drop);
    return 0;
}

static void
sink_dealloc(SinkObject *self)
{
    PyObject_GC_UnTrack(self);
    sink_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef sink_members[] = {
    {"max_queue", T_PYSSIZET, offsetof(SinkObject, max_queue), READONLY, NULL},
    {"batch", T_PYSSIZET, offsetof(SinkObject, batch), READONLY, NULL},
    {"encode", T_BOOL, offsetof(SinkObject, encode), READONLY, NULL},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(SinkObject, vectorcall), READONLY, NULL},
    {NULL},
};

PyDoc_STRVAR(sink_doc,
"Sink(queue, max_queue, batch, wake, drop, *, encode=False)\n\n"
"Called with an ended span's record: queues it on ``queue`` (a deque), unless it holds\n"
"``max_queue`` already (then ``drop(1, 'full')``); at ``batch`` queued or past, sets the\n"
"``wake`` event if it is not set (omnicore.telemetry._spans.Batcher.put, its Python twin).\n"
"``encode``: queues the record's bytes (``span(record)``) instead of the record.");

static PyTypeObject SinkType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omnicore.telemetry._spans.Sink",
    .tp_basicsize = sizeof(SinkObject),
    .tp_dealloc = (destructor)sink_dealloc,
    .tp_vectorcall_offset = offsetof(SinkObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = sink_doc,
    .tp_traverse = (traverseproc)sink_traverse,
    .tp_clear = (inquiry)sink_clear,
    .tp_members = sink_members,
    .tp_new = sink_new,
};

/* -- a plugin call's span ------------------------------------------------------------------
 * omnicore.telemetry._sdk.plugin_call, in C: made around every plugin call while tracing is
 * on, on the worker that runs the call. In Python its frame, its attributes' stores and the
 * reads of the call's version, runtime and breaker took some 1.8 us a call there, and work on
 * a call's worker costs a REST invoke some 2.5 times over (the event loop and the worker hand
 * the GIL to and fro on every call: docs/reference/performance.md). The names it uses
 * (CURRENT, _sampler, _outer, MEMORY_TTL_S, queue, PluginError...) are read from the module
 * it serves, on every call, as that module's own Python twin reads its globals: a set-up or
 * a test that rebinds one is seen. (_call_of is called on a miss of the version's own span
 * names, as the Python one looks there first; the clocks are the C library's own, the ones
 * time.time_ns and time.monotonic read.) */

typedef struct {
    PyObject_HEAD
    PyObject *globals;
    vectorcallfunc vectorcall;
} CallsObject;

static PyObject *str_CURRENT, *str_OTEL_CONTEXT, *str_outer, *str_sampler, *str_queue,
    *str_call_of, *str_memory_ttl, *str_spans, *str_memory_read, *str_PluginError,
    *str_version, *str_runtime, *str_usage, *str_fuel_enabled, *str_fuel, *str_memory_bytes,
    *str_breaker, *str_name,
    *key_input_bytes, *key_outcome, *key_output_bytes, *key_error_type, *key_breaker,
    *key_memory, *key_fuel, *str_ok, *str_error, *str_host_error, *traced_kwnames;

/* A name of the served module (a borrowed reference), or NameError. */
static PyObject *
global(PyObject *globals, PyObject *name)
{
    PyObject *value = PyDict_GetItemWithError(globals, name);
    if (value == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_NameError, "name '%U' is not defined", name);
    return value;
}

/* A name of the served module called with `args` (a new reference, or NULL). */
static PyObject *
call_global(PyObject *globals, PyObject *name, PyObject *const *args, size_t nargs)
{
    PyObject *f = global(globals, name);
    if (f == NULL)
        return NULL;
    Py_INCREF(f);  /* (the call may rebind the name) */
    PyObject *out = PyObject_Vectorcall(f, args, nargs, NULL);
    Py_DECREF(f);
    return out;
}

/* getattr(o, name, None): a new reference; NULL only on an error other than AttributeError. */
static PyObject *
attr_or_none(PyObject *o, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(o, name);
    if (value == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        value = Py_NewRef(Py_None);
    }
    return value;
}

/* An error raised while another is pending, as Python raises one in a finally block: the
 * new one goes on, the pending one (t, v, tb, taken here) its __context__. */
static void
chain(PyObject *t, PyObject *v, PyObject *tb)
{
    if (t == NULL)
        return;
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL && v != NULL)
        PyException_SetTraceback(v, tb);
    PyObject *t2, *v2, *tb2;
    PyErr_Fetch(&t2, &v2, &tb2);
    PyErr_NormalizeException(&t2, &v2, &tb2);
    if (v2 != NULL && v != NULL && v2 != v) {
        /* As the interpreter sets a context: a link of v's chain that is v2 is cut there,
         * so no cycle is made (v2 -> v -> ... -> v2). */
        PyObject *o = v, *context;
        while ((context = PyException_GetContext(o)) != NULL) {
            Py_DECREF(context);
            if (context == v2) {
                PyException_SetContext(o, NULL);
                break;
            }
            o = context;
        }
        PyException_SetContext(v2, Py_NewRef(v));
    }
    Py_DECREF(t);
    Py_XDECREF(v);
    Py_XDECREF(tb);
    PyErr_Restore(t2, v2, tb2);
}

/* The parent of a span begun now: the span current in `current` (the served module's
 * CURRENT), else the embedding application's OpenTelemetry span if it made one current
 * (_outer(), asked only while the API's own context variable, _OTEL_CONTEXT, holds a
 * context: None there means another runtime context, always asked), else None. A new
 * reference, or NULL. */
static PyObject *
parent_now(PyObject *g, PyObject *current)
{
    PyObject *parent;
    if (PyContextVar_Get(current, Py_None, &parent) < 0)
        return NULL;
    if (parent != Py_None)
        return parent;
    PyObject *otel = global(g, str_OTEL_CONTEXT);
    if (otel == NULL)
        goto fail;
    if (otel != Py_None) {
        PyObject *value;
        if (PyContextVar_Get(otel, NULL, &value) < 0)
            goto fail;
        if (value == NULL) {
            PyErr_SetObject(PyExc_LookupError, otel);
            goto fail;
        }
        int outer = PyObject_IsTrue(value);
        Py_DECREF(value);
        if (outer <= 0) {
            if (outer < 0)
                goto fail;
            return parent;
        }
    }
    Py_SETREF(parent, call_global(g, str_outer, NULL, 0));
    return parent;
fail:
    Py_DECREF(parent);
    return NULL;
}

/* The call itself: body(entry, handler, data, run, traced=True). */
static PyObject *
call_body(PyObject *const *args)
{
    PyObject *call[5] = {args[1], args[2], args[3], args[4], Py_True};
    return PyObject_Vectorcall(args[0], call, 4, traced_kwnames);
}

/* Its instances' memory, as _sdk._memory_of reads it (int(usage().memory_bytes), read again
 * after MEMORY_TTL_S: reading it walks the plugin's instances), the last reading kept by the
 * version (Version.memory_read: a (time.monotonic(), bytes) tuple). */
static PyObject *
memory_of(PyObject *g, PyObject *version, PyObject *usage)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    PyObject *now = PyFloat_FromDouble((double)ts.tv_sec + ts.tv_nsec / 1e9);
    if (now == NULL)
        return NULL;
    PyObject *seen = PyObject_GetAttr(version, str_memory_read), *memory = NULL;
    if (seen == NULL)
        goto done;
    if (seen != Py_None) {  /* now - seen[0] >= MEMORY_TTL_S: read again */
        PyObject *at = PySequence_GetItem(seen, 0), *ttl = global(g, str_memory_ttl);
        PyObject *elapsed = at == NULL || ttl == NULL ? NULL : PyNumber_Subtract(now, at);
        Py_XDECREF(at);
        if (elapsed == NULL)
            goto done;
        int stale = PyObject_RichCompareBool(elapsed, ttl, Py_GE);
        Py_DECREF(elapsed);
        if (stale < 0)
            goto done;
        if (!stale) {
            memory = PySequence_GetItem(seen, 1);
            goto done;
        }
    }
    PyObject *now_usage = PyObject_CallNoArgs(usage);
    if (now_usage == NULL)
        goto done;
    PyObject *got = PyObject_GetAttr(now_usage, str_memory_bytes);
    Py_DECREF(now_usage);
    if (got == NULL)
        goto done;
    memory = PyNumber_Long(got);
    Py_DECREF(got);
    if (memory == NULL)
        goto done;
    PyObject *read = PyTuple_Pack(2, now, memory);
    if (read == NULL || PyObject_SetAttr(version, str_memory_read, read) < 0)
        Py_CLEAR(memory);
    Py_XDECREF(read);
done:
    Py_DECREF(now);
    Py_XDECREF(seen);
    return memory;
}

/* A call's span name and shared attributes: the version's own (Version.spans, by handler),
 * else made by _sdk._call_of (which keeps them there). A new reference, or NULL. */
static PyObject *
call_of(PyObject *g, PyObject *entry, PyObject *version, PyObject *handler)
{
    if (version != Py_None) {
        PyObject *kept = PyObject_GetAttr(version, str_spans);
        if (kept == NULL)
            return NULL;
        PyObject *found = PyDict_CheckExact(kept) ? PyDict_GetItemWithError(kept, handler)
                                                  : NULL;
        Py_XINCREF(found);
        Py_DECREF(kept);
        if (found != NULL || PyErr_Occurred())
            return found;
    }
    PyObject *name = PyObject_GetAttr(entry, str_name);
    if (name == NULL)
        return NULL;
    PyObject *of[3] = {name, version, handler};
    PyObject *pair = call_global(g, str_call_of, of, 3);
    Py_DECREF(name);
    return pair;
}

/* What the call's span ends with, whatever the call did (plugin_call's finally block):
 * the breaker's state, memory and fuel, its name and shared attributes, its record queued.
 * 0, or -1 with an error set. */
static int
end_call(PyObject *g, PyObject *entry, PyObject *handler, PyObject *version,
         PyObject *usage, PyObject *fuel, PyObject *context_,
         PyObject *parent, PyObject *start_ns, PyObject *attributes, PyObject *error)
{
    PyObject *breaker = PyObject_GetAttr(entry, str_breaker);
    if (breaker == NULL)
        return -1;
    PyObject *state = PyObject_GetAttr(breaker, str_state);
    Py_DECREF(breaker);
    if (state == NULL)
        return -1;
    int rc = PyDict_SetItem(attributes, key_breaker, state);
    Py_DECREF(state);
    if (rc < 0)
        return -1;
    if (usage != Py_None) {  /* (try: ... except Exception: pass, a runtime closed meanwhile) */
        int failed = 0;
        if (fuel != Py_None) {
            PyObject *after = PyObject_CallNoArgs(usage), *got = NULL;
            failed = after == NULL ||
                (got = PyObject_GetAttr(after, str_memory_bytes)) == NULL ||
                PyDict_SetItem(attributes, key_memory, got) < 0;
            Py_XDECREF(got);
            got = NULL;
            if (!failed) {
                PyObject *now = PyObject_GetAttr(after, str_fuel), *spent = NULL;
                failed = now == NULL ||
                    (now != Py_None && ((spent = PyNumber_Subtract(now, fuel)) == NULL ||
                                        PyDict_SetItem(attributes, key_fuel, spent) < 0));
                Py_XDECREF(now);
                Py_XDECREF(spent);
            }
            Py_XDECREF(after);
        } else {
            PyObject *memory = memory_of(g, version, usage);
            failed = memory == NULL || PyDict_SetItem(attributes, key_memory, memory) < 0;
            Py_XDECREF(memory);
        }
        if (failed) {
            if (!PyErr_ExceptionMatches(PyExc_Exception))
                return -1;
            PyErr_Clear();
        }
    }
    PyObject *pair = call_of(g, entry, version, handler);
    if (pair == NULL)
        return -1;
    PyObject *both = PySequence_Fast(pair, "a call's name and shared attributes");
    Py_DECREF(pair);
    if (both == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(both) != 2) {
        Py_DECREF(both);
        PyErr_SetString(PyExc_ValueError, "a call's name and shared attributes: 2 values");
        return -1;
    }
    PyObject *kind = PyLong_FromLong(1), *status = PyLong_FromLong(error == Py_None ? 0
                                                                    : STATUS_ERROR);
    PyObject *record = NULL;
    if (kind != NULL && status != NULL) {
        PyObject *fields[9] = {context_, parent, PySequence_Fast_GET_ITEM(both, 0), kind,
                               start_ns, attributes, PySequence_Fast_GET_ITEM(both, 1),
                               status, error};
        record = ended(NULL, fields, 9);
    }
    Py_XDECREF(kind);
    Py_XDECREF(status);
    Py_DECREF(both);
    if (record == NULL)
        return -1;
    PyObject *done = call_global(g, str_queue, &record, 1);
    Py_DECREF(record);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 0;
}

static PyObject *
calls_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 5 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "plugin_call(body, entry, handler, data, run)");
        return NULL;
    }
    PyObject *g = ((CallsObject *)callable)->globals, *entry = args[1];
    PyObject *current = NULL, *parent = NULL, *made = NULL, *token = NULL, *out = NULL;
    PyObject *attributes = NULL, *version = NULL, *runtime = NULL, *usage = NULL;
    PyObject *fuel = NULL, *start_ns = NULL, *error = NULL;
    PyObject *t = NULL, *v = NULL, *tb = NULL;
    if ((current = global(g, str_CURRENT)) == NULL)
        return NULL;
    Py_INCREF(current);
    if ((parent = parent_now(g, current)) == NULL)
        goto done;
    PyObject *sampler = global(g, str_sampler);
    if (sampler == NULL)
        goto done;
    Py_INCREF(sampler);
    PyObject *of[2] = {parent, sampler};
    made = context(NULL, of, 2);
    Py_DECREF(sampler);
    if (made == NULL)
        goto done;
    ParentObject *c = (ParentObject *)made;
    int kept = PyObject_IsTrue(c->flags);
    if (kept < 0)
        goto done;
    if (!kept) {  /* sampled out: its context alone, for what the call sends on */
        if ((token = PyContextVar_Set(current, made)) == NULL)
            goto done;
        out = call_body(args);
        PyErr_Fetch(&t, &v, &tb);
        if (PyContextVar_Reset(current, token) < 0) {
            Py_CLEAR(out);
            chain(t, v, tb);
        } else
            PyErr_Restore(t, v, tb);
        t = v = tb = NULL;
        goto done;
    }
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    if ((start_ns = PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec))
            == NULL)
        goto done;
    Py_ssize_t size = PyObject_Size(args[3]);
    if (size < 0 || (attributes = PyDict_New()) == NULL)
        goto done;
    PyObject *n = PyLong_FromSsize_t(size);
    if (n == NULL || PyDict_SetItem(attributes, key_input_bytes, n) < 0) {
        Py_XDECREF(n);
        goto done;
    }
    Py_DECREF(n);
    Py_SETREF(c->attributes, Py_NewRef(attributes));
    if ((version = PyObject_GetAttr(entry, str_version)) == NULL)
        goto done;
    runtime = Py_NewRef(Py_None);
    usage = Py_NewRef(Py_None);
    fuel = Py_NewRef(Py_None);
    if (version != Py_None) {
        Py_SETREF(runtime, PyObject_GetAttr(version, str_runtime));
        if (runtime == NULL)
            goto done;
        Py_SETREF(usage, attr_or_none(runtime, str_usage));  /* (a component's has none) */
        if (usage == NULL)
            goto done;
        if (usage != Py_None) {
            PyObject *enabled = PyObject_GetAttr(runtime, str_fuel_enabled);
            int on = 0;
            if (enabled == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                    goto done;
                PyErr_Clear();
            } else {
                on = PyObject_IsTrue(enabled);
                Py_DECREF(enabled);
                if (on < 0)
                    goto done;
            }
            if (on) {
                PyObject *now = PyObject_CallNoArgs(usage);
                if (now == NULL)
                    goto done;
                Py_SETREF(fuel, PyObject_GetAttr(now, str_fuel));
                Py_DECREF(now);
                if (fuel == NULL)
                    goto done;
            }
        }
    }
    if ((token = PyContextVar_Set(current, made)) == NULL)
        goto done;
    out = call_body(args);
    if (out != NULL) {
        Py_ssize_t m = PyObject_Size(out);
        PyObject *length = m < 0 ? NULL : PyLong_FromSsize_t(m);
        if (length == NULL || PyDict_SetItem(attributes, key_outcome, str_ok) < 0 ||
                PyDict_SetItem(attributes, key_output_bytes, length) < 0)
            Py_CLEAR(out);
        Py_XDECREF(length);
    }
    error = Py_NewRef(Py_None);
    if (out == NULL) {  /* its class, never its message (a guest's input may be in it) */
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        /* (in the except block's order: its class named first, then classed; an error
         * raised on the way stops the block there, and goes on through the finally block
         * with the call's as its context) */
        PyObject *name = PyType_GetName((PyTypeObject *)t), *plugin_error;
        int ours = -1;
        if (name == NULL || (plugin_error = global(g, str_PluginError)) == NULL ||
                (ours = PyObject_IsInstance(v, plugin_error)) < 0 ||
                PyDict_SetItem(attributes, key_outcome, ours ? str_error : str_host_error) < 0 ||
                PyDict_SetItem(attributes, key_error_type, name) < 0) {
            chain(t, v, tb);
            PyErr_Fetch(&t, &v, &tb);
        }
        if (name != NULL)
            Py_SETREF(error, name);
    }
    /* finally: (with the call's error, if any, taken aside in t, v, tb) */
    if (PyContextVar_Reset(current, token) < 0 ||
            end_call(g, entry, args[2], version, usage, fuel, made, parent, start_ns,
                     attributes, error) < 0) {
        Py_CLEAR(out);
        chain(t, v, tb);
    } else
        PyErr_Restore(t, v, tb);
    t = v = tb = NULL;
done:
    Py_XDECREF(current);
    Py_XDECREF(parent);
    Py_XDECREF(made);
    Py_XDECREF(token);
    Py_XDECREF(attributes);
    Py_XDECREF(version);
    Py_XDECREF(runtime);
    Py_XDECREF(usage);
    Py_XDECREF(fuel);
    Py_XDECREF(start_ns);
    Py_XDECREF(error);
    return out;
}

static PyObject *
calls_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"globals", NULL};
    PyObject *globals;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!:PluginCalls", names, &PyDict_Type,
                                     &globals))
        return NULL;
    CallsObject *self = (CallsObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->globals = Py_NewRef(globals);
    self->vectorcall = (vectorcallfunc)calls_vectorcall;
    return (PyObject *)self;
}

static int
calls_traverse(CallsObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->globals);
    return 0;
}

static int
calls_clear(CallsObject *self)
{
    Py_CLEAR(self->globals);
    return 0;
}

static void
calls_dealloc(CallsObject *self)
{
    PyObject_GC_UnTrack(self);
    calls_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef calls_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(CallsObject, vectorcall), READONLY, NULL},
    {NULL},
};

PyDoc_STRVAR(calls_doc,
"PluginCalls(globals)\n\n"
"Called as ``plugin_call(body, entry, handler, data, run)``: a plugin call's span around\n"
"``body(entry, handler, data, run, traced=True)`` (omnicore.telemetry._sdk.plugin_call, its\n"
"Python twin, whose module's ``globals`` it reads its names from on every call).");

static PyTypeObject CallsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omnicore.telemetry._sdk.PluginCalls",
    .tp_basicsize = sizeof(CallsObject),
    .tp_dealloc = (destructor)calls_dealloc,
    .tp_vectorcall_offset = offsetof(CallsObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = calls_doc,
    .tp_traverse = (traverseproc)calls_traverse,
    .tp_clear = (inquiry)calls_clear,
    .tp_members = calls_members,
    .tp_new = calls_new,
};

/* The names plugin_call reads and writes, interned once. */
static int
intern_calls_names(void)
{
    struct { PyObject **at; const char *text; } names[] = {
        {&str_CURRENT, "CURRENT"}, {&str_OTEL_CONTEXT, "_OTEL_CONTEXT"},
        {&str_outer, "_outer"}, {&str_sampler, "_sampler"}, {&str_queue, "queue"},
        {&str_call_of, "_call_of"}, {&str_memory_ttl, "MEMORY_TTL_S"}, {&str_spans, "spans"},
        {&str_memory_read, "memory_read"},
        {&str_PluginError, "PluginError"}, {&str_version, "version"},
        {&str_runtime, "runtime"}, {&str_usage, "usage"}, {&str_fuel_enabled, "fuel_enabled"},
        {&str_fuel, "fuel"}, {&str_memory_bytes, "memory_bytes"}, {&str_breaker, "breaker"},
        {&str_name, "name"}, {&key_input_bytes, "omnicore.plugin.input_bytes"},
        {&key_outcome, "omnicore.plugin.outcome"},
        {&key_output_bytes, "omnicore.plugin.output_bytes"}, {&key_error_type, "error.type"},
        {&key_breaker, "omnicore.plugin.breaker"},
        {&key_memory, "omnicore.plugin.memory_bytes"}, {&key_fuel, "omnicore.plugin.fuel"},
        {&str_ok, "ok"}, {&str_error, "error"}, {&str_host_error, "host-error"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].at = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    PyObject *traced = PyUnicode_InternFromString("traced");
    if (traced == NULL)
        return -1;
    traced_kwnames = PyTuple_Pack(1, traced);
    Py_DECREF(traced);
    return traced_kwnames == NULL ? -1 : 0;
}

/* -- a request's span -----------------------------------------------------------------------
 * omnicore.telemetry.asgi.ServerSpan, in C: what the console's tracing middleware does for
 * every HTTP request, traced or sampled out (its context made and current, the response's
 * status seen as it is sent, its record queued at the end). In Python the middleware's own
 * code was some 17 thousand instructions a request, its send wrapper a frame for every
 * message. The names it uses (CURRENT, _sampler, _outer, served, queue, parse_traceparent)
 * are read from omnicore.telemetry._sdk's globals, as PluginCalls reads them. */

typedef struct {
    PyObject_HEAD
    PyObject *globals, *current, *send, *scope, *method, *context, *parent, *token, *start_ns;
    PyObject *status;  /* int(message["status"]) of the response's start; 0 before it */
    vectorcallfunc vectorcall;
} ServerObject;

static PyTypeObject ServerType;
static PyObject *str_type, *str_status, *str_more_body, *str_headers, *str_method, *str_path,
    *str_route, *str_scheme, *str_http, *str_served, *str__served, *str_parse_traceparent,
    *str_decode, *str_latin1, *str_old_value, *str_MISSING, *str_get, *key_url_path,
    *bytes_traceparent, *bytes_tracestate;

/* scope[key] of a dict, as Python's subscript (a new reference, or NULL: KeyError). */
static PyObject *
item(PyObject *mapping, PyObject *key)
{
    if (PyDict_CheckExact(mapping)) {
        PyObject *found = PyDict_GetItemWithError(mapping, key);
        if (found == NULL && !PyErr_Occurred())
            PyErr_SetObject(PyExc_KeyError, key);
        return Py_XNewRef(found);
    }
    return PyObject_GetItem(mapping, key);
}

/* mapping.get(key, default), a new reference. */
static PyObject *
item_or(PyObject *mapping, PyObject *key, PyObject *otherwise)
{
    if (PyDict_CheckExact(mapping)) {
        PyObject *found = PyDict_GetItemWithError(mapping, key);
        if (found == NULL && PyErr_Occurred())
            return NULL;
        return Py_NewRef(found ? found : otherwise);
    }
    PyObject *args[3] = {mapping, key, otherwise};
    return PyObject_VectorcallMethod(str_get, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* `key, value = pair`, as Python unpacks a header (ValueError for another length): new
 * references, or -1. */
static int
unpack_pair(PyObject *pair, PyObject **key, PyObject **value)
{
    PyObject *fast = PySequence_Fast(pair, "cannot unpack a header that is not iterable");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n != 2) {
        PyErr_Format(PyExc_ValueError, n < 2 ? "not enough values to unpack (expected 2, got "
                     "%zd)" : "too many values to unpack (expected 2)", n);
        Py_DECREF(fast);
        return -1;
    }
    *key = Py_NewRef(PySequence_Fast_GET_ITEM(fast, 0));
    *value = Py_NewRef(PySequence_Fast_GET_ITEM(fast, 1));
    Py_DECREF(fast);
    return 0;
}

/* Whether a header is named `name` (`name in map(itemgetter(0), headers)`): 1, 0 or -1. */
static int
has_header(PyObject *headers, PyObject *name)
{
    PyObject *it = PyObject_GetIter(headers), *pair;
    if (it == NULL)
        return -1;
    int found = 0;
    while (!found && (pair = PyIter_Next(it)) != NULL) {
        PyObject *key = PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) > 0
            ? Py_NewRef(PyTuple_GET_ITEM(pair, 0)) : PySequence_GetItem(pair, 0);
        Py_DECREF(pair);
        if (key == NULL) {
            Py_DECREF(it);
            return -1;
        }
        found = PyObject_RichCompareBool(key, name, Py_EQ);
        Py_DECREF(key);
        if (found < 0) {
            Py_DECREF(it);
            return -1;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : found;
}

/* The value of the first header named `name` (a new reference; NULL, no error: none), each
 * header before it unpacked as Python's `for key, value in headers` does. */
static int
header(PyObject *headers, PyObject *name, PyObject **value)
{
    *value = NULL;
    PyObject *it = PyObject_GetIter(headers), *pair;
    if (it == NULL)
        return -1;
    while ((pair = PyIter_Next(it)) != NULL) {
        PyObject *key, *found;
        int rc = unpack_pair(pair, &key, &found);
        Py_DECREF(pair);
        if (rc < 0) {
            Py_DECREF(it);
            return -1;
        }
        int same = PyObject_RichCompareBool(key, name, Py_EQ);
        Py_DECREF(key);
        if (same != 0) {
            Py_DECREF(it);
            if (same < 0) {
                Py_DECREF(found);
                return -1;
            }
            *value = found;
            return 0;
        }
        Py_DECREF(found);
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* A header's bytes as text (value.decode("latin-1")). */
static PyObject *
latin1(PyObject *value)
{
    if (PyBytes_CheckExact(value))
        return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
    return PyObject_CallMethodOneArg(value, str_decode, str_latin1);
}

static PyObject *server_send(PyObject *callable, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames);

PyDoc_STRVAR(server_span_doc,
"server_span(globals, scope, send) -> ServerSpan\n\n"
"An HTTP request's span begun (omnicore.telemetry.asgi.ServerSpan, its Python twin): an\n"
"incoming traceparent continued, its context made and current. Called with each of the\n"
"response's messages, it hands them to ``send``; ``end(error)`` ends it.");

static PyObject *
server_span(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "server_span(globals, scope, send)");
        return NULL;
    }
    PyObject *g = args[0], *scope = args[1];
    ServerObject *self = PyObject_GC_New(ServerObject, &ServerType);
    if (self == NULL)
        return NULL;
    self->globals = Py_NewRef(g);
    self->send = Py_NewRef(args[2]);
    self->scope = Py_NewRef(scope);
    self->current = self->method = self->context = self->parent = self->token = NULL;
    self->start_ns = NULL;
    self->status = PyLong_FromLong(0);
    self->vectorcall = (vectorcallfunc)NULL;
    PyObject_GC_Track(self);
    PyObject *headers = NULL, *parent = NULL, *value = NULL;
    if ((self->current = Py_XNewRef(global(g, str_CURRENT))) == NULL ||
            (headers = item(scope, str_headers)) == NULL)
        goto fail;
    int any = has_header(headers, bytes_traceparent);  /* (most requests have none) */
    if (any < 0 || (any && header(headers, bytes_traceparent, &value) < 0))
        goto fail;
    if (value != NULL) {  /* (most requests have none) */
        PyObject *state = NULL, *text = NULL, *state_text = NULL;
        int rc = header(headers, bytes_tracestate, &state);
        if (rc == 0 && (text = latin1(value)) != NULL &&
                (state == NULL || (state_text = latin1(state)) != NULL)) {
            PyObject *of[2] = {text, state_text ? state_text : Py_None};
            parent = call_global(g, str_parse_traceparent, of, 2);
        }
        Py_XDECREF(state);
        Py_XDECREF(text);
        Py_XDECREF(state_text);
        Py_CLEAR(value);
        if (parent == NULL)
            goto fail;
    }
    if ((self->method = item(scope, str_method)) == NULL)
        goto fail;
    if (parent == NULL || parent == Py_None) {
        Py_CLEAR(parent);
        if ((parent = parent_now(g, self->current)) == NULL)
            goto fail;
    }
    self->parent = parent;
    parent = NULL;
    PyObject *sampler = Py_XNewRef(global(g, str_sampler));
    if (sampler == NULL)
        goto fail;
    PyObject *of[2] = {self->parent, sampler};
    self->context = context(NULL, of, 2);
    Py_DECREF(sampler);
    if (self->context == NULL)
        goto fail;
    /* What the request's work sees as its parent: the span's context alone (see asgi.py). */
    if ((self->token = PyContextVar_Set(self->current, self->context)) == NULL)
        goto fail;
    int kept = PyObject_IsTrue(((ParentObject *)self->context)->flags);
    if (kept < 0)
        goto fail;
    if (kept) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if ((self->start_ns = PyLong_FromLongLong((long long)ts.tv_sec * 1000000000LL +
                                                  ts.tv_nsec)) == NULL)
            goto fail;
    }
    Py_DECREF(headers);
    self->vectorcall = (vectorcallfunc)server_send;
    return (PyObject *)self;
fail:
    Py_XDECREF(headers);
    Py_XDECREF(parent);
    Py_XDECREF(value);
    if (self->token != NULL) {  /* (nothing made current stays so) */
        PyObject *t, *v, *tb;
        PyErr_Fetch(&t, &v, &tb);
        if (PyContextVar_Reset(self->current, self->token) < 0)
            PyErr_Clear();
        PyErr_Restore(t, v, tb);
        Py_CLEAR(self->token);
    }
    Py_DECREF(self);
    return NULL;
}

/* Whether `kind` (a message's type) is the str `text`. */
static int
is(PyObject *kind, const char *text)
{
    return PyUnicode_Check(kind) && PyUnicode_CompareWithASCIIString(kind, text) == 0;
}

/* The response's messages: its status seen, the request's context current no more for its
 * last one, each handed to send (its awaitable returned, for the caller to await). */
static PyObject *
server_send(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ServerObject *self = (ServerObject *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "a span's send takes one message");
        return NULL;
    }
    PyObject *message = args[0];
    PyObject *kind = item(message, str_type);
    if (kind == NULL)
        return NULL;
    if (is(kind, "http.response.start")) {
        PyObject *status = item(message, str_status), *number = NULL;
        if (status != NULL)
            number = PyNumber_Long(status);
        Py_XDECREF(status);
        if (number == NULL) {
            Py_DECREF(kind);
            return NULL;
        }
        Py_SETREF(self->status, number);
    } else if (is(kind, "http.response.body")) {
        PyObject *more = item_or(message, str_more_body, Py_None);
        int going = more == NULL ? -1 : PyObject_IsTrue(more);
        Py_XDECREF(more);
        if (going < 0) {
            Py_DECREF(kind);
            return NULL;
        }
        /* The request's context current no more for its last message: the server's send of
         * it starts the connection's keep-alive wait, a task made in the context current
         * then, whose timer stays in the loop's heap for 5 s (asgi.py says more). */
        if (!going && self->token != NULL) {
            if (PyContextVar_Reset(self->current, self->token) == 0)
                Py_CLEAR(self->token);
            else if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                /* Sent from a task of its own (a streamed answer's), whose context is a copy:
                 * set back to what was current before the request; the request's own is
                 * reset at the end. */
                PyErr_Clear();
                PyObject *old = PyObject_GetAttr(self->token, str_old_value);
                PyObject *missing = old == NULL ? NULL
                    : PyObject_GetAttr((PyObject *)Py_TYPE(self->token), str_MISSING);
                PyObject *back = missing == NULL ? NULL
                    : PyContextVar_Set(self->current, old == missing ? Py_None : old);
                Py_XDECREF(old);
                Py_XDECREF(missing);
                if (back == NULL) {
                    Py_DECREF(kind);
                    return NULL;
                }
                Py_DECREF(back);
            } else {
                Py_DECREF(kind);
                return NULL;
            }
        }
    }
    Py_DECREF(kind);
    return PyObject_CallOneArg(self->send, message);
}

PyDoc_STRVAR(server_end_doc,
"end(error)\n\n"
"The request's context reset, and its span, if kept, ended and queued: ``error`` is what\n"
"escaped the app (its class is named, never its message), or None.");

static PyObject *
server_end(ServerObject *self, PyObject *error)
{
    if (self->token != NULL) {
        int rc = PyContextVar_Reset(self->current, self->token);
        Py_CLEAR(self->token);
        if (rc < 0)
            return NULL;
    }
    if (self->start_ns == NULL)  /* sampled out, or ended already */
        Py_RETURN_NONE;
    PyObject *start_ns = self->start_ns;
    self->start_ns = NULL;  /* (once) */
    PyObject *g = self->globals, *scope = self->scope, *out = NULL;
    PyObject *route = NULL, *path = NULL, *scheme = NULL, *pair = NULL;
    PyObject *attributes = NULL, *name = NULL, *both = NULL, *kind = NULL, *code = NULL;
    PyObject *record = NULL;
    PyObject *found = item_or(scope, str_route, Py_None);
    if (found == NULL)
        goto done;
    route = attr_or_none(found, str_path);
    Py_DECREF(found);
    if (route == NULL)
        goto done;
    if (!PyUnicode_Check(route))
        Py_SETREF(route, Py_NewRef(Py_None));
    if ((scheme = item_or(scope, str_scheme, str_http)) == NULL)
        goto done;
    /* The route's name and shared attributes, made once by _sdk.served and kept in its
     * _served by the same key: read here, they cost a request no Python frame (issue 62). */
    PyObject *of[4] = {self->method, scheme, route, self->status};
    PyObject *made = PyDict_GetItemWithError(g, str__served), *key;  /* (none: served) */
    if (made == NULL && PyErr_Occurred())
        goto done;
    if (made != NULL && PyDict_CheckExact(made)) {
        if ((key = PyTuple_Pack(4, of[0], of[1], of[2], of[3])) == NULL)
            goto done;
        pair = PyDict_GetItemWithError(made, key);  /* (borrowed) */
        Py_DECREF(key);
        if (pair == NULL && PyErr_Occurred())
            goto done;
        Py_XINCREF(pair);
    }
    if ((pair == NULL && (pair = call_global(g, str_served, of, 4)) == NULL) ||
            (both = PySequence_Fast(pair, "a request's name and shared attributes")) == NULL)
        goto done;
    if (PySequence_Fast_GET_SIZE(both) != 2) {
        PyErr_SetString(PyExc_ValueError, "a request's name and shared attributes: 2 values");
        goto done;
    }
    if ((path = item(scope, str_path)) == NULL || (attributes = PyDict_New()) == NULL ||
            PyDict_SetItem(attributes, key_url_path, path) < 0)
        goto done;
    if (error != Py_None) {
        if ((name = PyType_GetName(Py_TYPE(error))) == NULL ||
                PyDict_SetItem(attributes, key_error_type, name) < 0)
            goto done;
    }
    int failed = error != Py_None;
    if (!failed) {
        PyObject *five_hundred = PyLong_FromLong(500);
        failed = five_hundred == NULL ? -1
            : PyObject_RichCompareBool(self->status, five_hundred, Py_GE);
        Py_XDECREF(five_hundred);
        if (failed < 0)
            goto done;
    }
    if ((kind = PyLong_FromLong(2)) == NULL ||
            (code = PyLong_FromLong(failed ? STATUS_ERROR : 0)) == NULL)
        goto done;
    PyObject *fields[9] = {self->context, self->parent, PySequence_Fast_GET_ITEM(both, 0), kind,
                           start_ns, attributes, PySequence_Fast_GET_ITEM(both, 1), code,
                           name ? name : Py_None};
    if ((record = ended(NULL, fields, 9)) == NULL)
        goto done;
    PyObject *done_ = call_global(g, str_queue, &record, 1);
    if (done_ == NULL)
        goto done;
    Py_DECREF(done_);
    out = Py_NewRef(Py_None);
done:
    Py_DECREF(start_ns);
    Py_XDECREF(route);
    Py_XDECREF(path);
    Py_XDECREF(scheme);
    Py_XDECREF(pair);
    Py_XDECREF(both);
    Py_XDECREF(attributes);
    Py_XDECREF(name);
    Py_XDECREF(kind);
    Py_XDECREF(code);
    Py_XDECREF(record);
    return out;
}

static int
server_traverse(ServerObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->globals);
    Py_VISIT(self->current);
    Py_VISIT(self->send);
    Py_VISIT(self->scope);
    Py_VISIT(self->method);
    Py_VISIT(self->context);
    Py_VISIT(self->parent);
    Py_VISIT(self->token);
    Py_VISIT(self->status);
    return 0;
}

static int
server_clear(ServerObject *self)
{
    Py_CLEAR(self->globals);
    Py_CLEAR(self->current);
    Py_CLEAR(self->send);
    Py_CLEAR(self->scope);
    Py_CLEAR(self->method);
    Py_CLEAR(self->context);
    Py_CLEAR(self->parent);
    Py_CLEAR(self->token);
    Py_CLEAR(self->start_ns);
    Py_CLEAR(self->status);
    return 0;
}

static void
server_dealloc(ServerObject *self)
{
    PyObject_GC_UnTrack(self);
    server_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *
server_status(ServerObject *self, void *closure)
{
    return Py_NewRef(self->status);
}

static PyGetSetDef server_getset[] = {
    {"status", (getter)server_status, NULL, "The response's status, once its start is sent.",
     NULL},
    {NULL},
};

static PyMethodDef server_methods[] = {
    {"end", (PyCFunction)server_end, METH_O, server_end_doc},
    {NULL},
};

static PyMemberDef server_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(ServerObject, vectorcall), READONLY, NULL},
    {NULL},
};

static PyTypeObject ServerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omnicore.telemetry.asgi.ServerSpan",
    .tp_basicsize = sizeof(ServerObject),
    .tp_dealloc = (destructor)server_dealloc,
    .tp_vectorcall_offset = offsetof(ServerObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = server_span_doc,
    .tp_traverse = (traverseproc)server_traverse,
    .tp_clear = (inquiry)server_clear,
    .tp_methods = server_methods,
    .tp_members = server_members,
    .tp_getset = server_getset,
};

static int
intern_server_names(void)
{
    struct { PyObject **at; const char *text; } names[] = {
        {&str_type, "type"}, {&str_status, "status"}, {&str_more_body, "more_body"},
        {&str_headers, "headers"}, {&str_method, "method"}, {&str_path, "path"},
        {&str_route, "route"}, {&str_scheme, "scheme"}, {&str_http, "http"},
        {&str_served, "served"}, {&str__served, "_served"},
        {&str_parse_traceparent, "parse_traceparent"},
        {&str_decode, "decode"}, {&str_latin1, "latin-1"}, {&str_old_value, "old_value"},
        {&str_MISSING, "MISSING"}, {&str_get, "get"}, {&key_url_path, "url.path"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].at = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    if ((bytes_traceparent = PyBytes_FromString("traceparent")) == NULL ||
            (bytes_tracestate = PyBytes_FromString("tracestate")) == NULL)
        return -1;
    return 0;
}

/* -- a plugin's log line's ids, its host calls counted -------------------------------------
 * omnicore.telemetry._sdk.log_ids and count, in C (each bound to CURRENT with
 * functools.partial): both run on the plugin call's worker, a log line's ids on every line a
 * plugin writes, a count on every kv and config call. */

/* The span context current (a Parent, a Span or None): its trace and span ids, or -1. */
static int
ids_of(PyObject *current, unsigned char trace[16], unsigned char span[8])
{
    PyObject *trace_id, *span_id;
    if (Py_IS_TYPE(current, &ParentType)) {
        trace_id = Py_XNewRef(((ParentObject *)current)->trace_id);
        span_id = Py_XNewRef(((ParentObject *)current)->span_id);
        if (trace_id == NULL || span_id == NULL) {
            Py_XDECREF(trace_id);
            Py_XDECREF(span_id);
            PyErr_SetString(PyExc_AttributeError, "a context without its ids");
            return -1;
        }
    } else {
        if ((trace_id = PyObject_GetAttr(current, str_trace_id)) == NULL)
            return -1;
        if ((span_id = PyObject_GetAttr(current, str_span_id)) == NULL) {
            Py_DECREF(trace_id);
            return -1;
        }
    }
    int rc = -1;
    if (!PyLong_Check(trace_id) || !PyLong_Check(span_id))
        PyErr_SetString(PyExc_TypeError, "a span's ids are ints");
    else if (_PyLong_AsByteArray((PyLongObject *)trace_id, trace, 16, 0, 0) == 0 &&
             _PyLong_AsByteArray((PyLongObject *)span_id, span, 8, 0, 0) == 0)
        rc = 0;
    Py_DECREF(trace_id);
    Py_DECREF(span_id);
    return rc;
}

PyDoc_STRVAR(log_ids_doc,
"log_ids(var) -> str\n\n"
"What a plugin's log line ends with inside a span, the span current in ``var``:\n"
"`` trace_id=... span_id=...`` (lower-case hex); empty outside one.");

static PyObject *
log_ids(PyObject *module, PyObject *var)
{
    PyObject *current;
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "log_ids(var): a ContextVar");
        return NULL;
    }
    if (PyContextVar_Get(var, Py_None, &current) < 0)
        return NULL;
    if (current == Py_None) {
        Py_DECREF(current);
        return PyUnicode_New(0, 0);
    }
    unsigned char trace[16], span[8];
    int rc = ids_of(current, trace, span);
    Py_DECREF(current);
    if (rc < 0)
        return NULL;
    static const char hex[] = "0123456789abcdef";
    static const char head[] = " trace_id=", middle[] = " span_id=";
    char text[sizeof head - 1 + 32 + sizeof middle - 1 + 16], *at = text;
    memcpy(at, head, sizeof head - 1);
    at += sizeof head - 1;
    for (int i = 0; i < 16; i++) {
        *at++ = hex[trace[i] >> 4];
        *at++ = hex[trace[i] & 15];
    }
    memcpy(at, middle, sizeof middle - 1);
    at += sizeof middle - 1;
    for (int i = 0; i < 8; i++) {
        *at++ = hex[span[i] >> 4];
        *at++ = hex[span[i] & 15];
    }
    return PyUnicode_FromStringAndSize(text, at - text);
}

PyDoc_STRVAR(count_doc,
"count(var, attribute)\n\n"
"Add one to the integer ``attribute`` of the span current in ``var``, if it is recorded\n"
"and has attributes of its own (a Span's, a plugin call's).");

static PyObject *
count(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyContextVar_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "count(var, attribute)");
        return NULL;
    }
    PyObject *current, *flags = NULL, *attributes = NULL, *out = NULL;
    if (PyContextVar_Get(args[0], Py_None, &current) < 0)
        return NULL;
    if (current == Py_None) {
        Py_DECREF(current);
        Py_RETURN_NONE;
    }
    /* current.flags & 0x01, then current.attributes, as the Python one reads them */
    if ((flags = PyObject_GetAttr(current, str_flags)) == NULL)
        goto done;
    PyObject *bit = PyNumber_And(flags, one);
    int kept = bit == NULL ? -1 : PyObject_IsTrue(bit);
    Py_XDECREF(bit);
    if (kept < 0)
        goto done;
    if (kept && (attributes = PyObject_GetAttr(current, str_attributes)) == NULL)
        goto done;
    if (!kept || attributes == Py_None) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *zero = PyLong_FromLong(0);  /* (the interpreter's own) */
    PyObject *now = zero == NULL ? NULL : item_or(attributes, args[1], zero), *more = NULL;
    Py_XDECREF(zero);
    if (now != NULL) {
        more = PyNumber_Add(now, one);
        Py_DECREF(now);
    }
    if (more == NULL)
        goto done;
    int rc = PyObject_SetItem(attributes, args[1], more);
    Py_DECREF(more);
    if (rc == 0)
        out = Py_NewRef(Py_None);
done:
    Py_DECREF(current);
    Py_XDECREF(flags);
    Py_XDECREF(attributes);
    return out;
}

static void
after_fork_in_child(void)
{
    seed_rng();
}

static int
bytes_like(PyObject *o, const char *what, Py_buffer *view)
{
    if (PyObject_GetBuffer(o, view, PyBUF_SIMPLE) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes", what);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(request_doc,
"request(resource, scope, spans) -> bytes\n\n"
"An ExportTraceServiceRequest of ``spans`` (ended spans' records, or their bytes from\n"
"``span``), all of one resource and\n"
"scope: ``resource`` the encoded Resource as ResourceSpans' field 1, ``scope`` the encoded\n"
"InstrumentationScope as ScopeSpans' field 1 (omnicore.telemetry._otlp.scope).");

static PyObject *
request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "request(resource, scope, spans)");
        return NULL;
    }
    Py_buffer resource, scope;
    if (bytes_like(args[0], "resource", &resource) < 0)
        return NULL;
    if (bytes_like(args[1], "scope", &scope) < 0) {
        PyBuffer_Release(&resource);
        return NULL;
    }
    PyObject *out = NULL, *it = NULL, *r;
    Buf b = {0};
    Py_ssize_t outer, scoped;
    if ((outer = open_field(&b, 0x0A)) < 0 || put(&b, resource.buf, resource.len) < 0 ||
        (scoped = open_field(&b, 0x12)) < 0 || put(&b, scope.buf, scope.len) < 0)
        goto done;
    if ((it = PyObject_GetIter(args[2])) == NULL)
        goto done;
    while ((r = PyIter_Next(it)) != NULL) {
        int rc = PyBytes_CheckExact(r) ? put_encoded(&b, r) : put_span(&b, r);
        Py_DECREF(r);
        if (rc < 0)
            goto done;
    }
    if (PyErr_Occurred() || close_field(&b, scoped) < 0 || close_field(&b, outer) < 0)
        goto done;
    out = PyBytes_FromStringAndSize(b.data, b.len);
done:
    Py_XDECREF(it);
    PyMem_Free(b.data);
    PyBuffer_Release(&resource);
    PyBuffer_Release(&scope);
    return out;
}

PyDoc_STRVAR(attributes_doc,
"attributes(tag, items) -> bytes\n\n"
"``items`` (a mapping) as the repeated KeyValue field ``tag`` (a field's first byte), None\n"
"values left out.");

static PyObject *
attributes(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "attributes(tag, items)");
        return NULL;
    }
    long tag = PyLong_AsLong(args[0]);
    if (tag == -1 && PyErr_Occurred())
        return NULL;
    if (tag < 0 || tag > 0x7F) {
        PyErr_SetString(PyExc_ValueError, "a field's tag is one byte under 0x80");
        return NULL;
    }
    Buf b = {0};
    PyObject *out = NULL;
    if (put_attributes(&b, (unsigned char)tag, args[1]) == 0)
        out = PyBytes_FromStringAndSize(b.data ? b.data : "", b.len);
    PyMem_Free(b.data);
    return out;
}

PyDoc_STRVAR(span_doc,
"span(record) -> bytes\n\n"
"One ended span's record as ScopeSpans' field 2: what ``request`` puts as it is.");

static PyObject *
span(PyObject *module, PyObject *record)
{
    return span_bytes(record);
}

static PyMethodDef methods[] = {
    {"span", (PyCFunction)span, METH_O, span_doc},
    {"request", (PyCFunction)(void (*)(void))request, METH_FASTCALL, request_doc},
    {"attributes", (PyCFunction)(void (*)(void))attributes, METH_FASTCALL, attributes_doc},
    {"context", (PyCFunction)(void (*)(void))context, METH_FASTCALL, context_doc},
    {"ended", (PyCFunction)(void (*)(void))ended, METH_FASTCALL, ended_doc},
    {"server_span", (PyCFunction)(void (*)(void))server_span, METH_FASTCALL, server_span_doc},
    {"log_ids", (PyCFunction)log_ids, METH_O, log_ids_doc},
    {"count", (PyCFunction)(void (*)(void))count, METH_FASTCALL, count_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "omnicore.telemetry._otlpenc",
    "Ended spans' records into OTLP's protobuf bytes (ExportTraceServiceRequest).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__otlpenc(void)
{
    PyObject *abc = PyImport_ImportModule("collections.abc");
    if (abc == NULL)
        return NULL;
    sequence_abc = PyObject_GetAttrString(abc, "Sequence");
    mapping_abc = PyObject_GetAttrString(abc, "Mapping");
    Py_DECREF(abc);
    if (sequence_abc == NULL || mapping_abc == NULL || (sixty_four = PyLong_FromLong(64)) == NULL)
        return NULL;
    if ((one = PyLong_FromLong(1)) == NULL ||
        (two_to_64 = PyNumber_Lshift(one, sixty_four)) == NULL ||
        (str_bound = PyUnicode_InternFromString("bound")) == NULL ||
        (str_parent_based = PyUnicode_InternFromString("parent_based")) == NULL ||
        (str_trace_id = PyUnicode_InternFromString("trace_id")) == NULL ||
        (str_span_id = PyUnicode_InternFromString("span_id")) == NULL ||
        (str_flags = PyUnicode_InternFromString("flags")) == NULL ||
        (str_state = PyUnicode_InternFromString("state")) == NULL ||
        (str_attributes = PyUnicode_InternFromString("attributes")) == NULL)
        return NULL;
    seed_rng();
    if (pthread_atfork(NULL, NULL, after_fork_in_child) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    if ((str_append = PyUnicode_InternFromString("append")) == NULL ||
        (str_is_set = PyUnicode_InternFromString("is_set")) == NULL ||
        (str_set = PyUnicode_InternFromString("set")) == NULL ||
        (str_full = PyUnicode_InternFromString("full")) == NULL ||
        (str_unencodable = PyUnicode_InternFromString("unencodable")) == NULL)
        return NULL;
    if (intern_calls_names() < 0 || intern_server_names() < 0 ||
            PyType_Ready(&ParentType) < 0 || PyType_Ready(&SinkType) < 0 ||
            PyType_Ready(&CallsType) < 0 || PyType_Ready(&ServerType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Parent", (PyObject *)&ParentType) < 0 ||
        PyModule_AddObjectRef(module, "Sink", (PyObject *)&SinkType) < 0 ||
        PyModule_AddObjectRef(module, "PluginCalls", (PyObject *)&CallsType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
