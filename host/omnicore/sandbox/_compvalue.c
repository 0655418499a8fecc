/* Every canonical signature's JSON lane (issue 47): records, tuples, variants, enums, flags,
 * options, results, strings and lists of them lowered from the call's JSON bytes straight into
 * core values and guest memory, and the result lifted from core values and memory straight
 * into JSON bytes, by a plan computed once per export (flatcall.FlatCall.plan_desc, from
 * canonabi's layouts). It does what canonabi.py's lowerer/storer/lifter/loader do, with the
 * same traps in the same words, and no Python object per value.
 *
 * As for the scalar lane (_compcall.c), the JSON is taken only when it is plainly the
 * arguments: a first pass over it checks every value against its type (record fields in
 * their declared order, each once; strings without escapes; numbers within their type) and
 * records each list's length, calling nothing; on anything else call_json answers
 * NotImplemented before anything ran, and the Python path (parse_arguments, values.py's
 * checks) gives its answer or its refusal. The second pass lowers: each string and list
 * into memory the guest's realloc gives (checked aligned and in bounds), in canonabi's
 * order. Core values are carried as raw 64-bit words (an f32 as its bits in the low half),
 * so joining a variant case's values into the variant's slots is the identity, and reading
 * one back is a mask to the case's own width (canonabi._to_joined/_from_joined). */
#include "_compcall.h"

#include <math.h>
#include <string.h>

enum { N_SCALAR, N_STRING, N_LIST, N_RECORD, N_TUPLE, N_VARIANT, N_ENUM, N_OPTION, N_RESULT,
       N_FLAGS };
static const char *const node_kinds[] = {"", "string", "list", "record", "tuple", "variant",
                                         "enum", "option", "result", "flags", NULL};
#define MAX_FLAGS 256

typedef struct node {
    uint8_t kind, w;          /* N_*; W_* of a scalar */
    uint32_t size, align;
    int nflat;
    char *flat;               /* its core types, 'i' 'q' 'f' 'd' */
    int n;                    /* members, cases, flags; 1 for a list */
    struct node **sub;        /* members, case payloads (NULL: none), a list's element */
    uint32_t *off;            /* a record's or tuple's member offsets */
    uint32_t payload;         /* a variant's payload offset */
    uint8_t disc;             /* its discriminant's bytes */
    char **name;              /* field, case or flag names as JSON strings (quoted) */
    size_t *nlen;
} node;

struct comp_plan {
    node *params;             /* a tuple of the parameters */
    node *result;             /* or NULL */
    int spilled;              /* the parameters through memory (one core pointer) */
    int returned;             /* the result through a return area */
    int memory;               /* a call touches memory */
};

static void
node_free(node *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->n; i++) {
        if (t->sub != NULL)
            node_free(t->sub[i]);
        if (t->name != NULL)
            PyMem_Free(t->name[i]);
    }
    PyMem_Free(t->sub);
    PyMem_Free(t->name);
    PyMem_Free(t->nlen);
    PyMem_Free(t->off);
    PyMem_Free(t->flat);
    PyMem_Free(t);
}

/* A node from its description: (kind, size, align, flat, subs, names, offsets, payload,
 * disc); kind a WIT scalar name or one of node_kinds; subs nodes or None; names bytes. */
static node *
node_new(PyObject *d, int depth)
{
    if (depth > 100 || !PyTuple_Check(d) || PyTuple_GET_SIZE(d) != 9) {
        PyErr_SetString(PyExc_ValueError, "a plan node: a tuple of nine");
        return NULL;
    }
    node *t = PyMem_Calloc(1, sizeof *t);
    if (t == NULL)
        return (node *)PyErr_NoMemory();
    const char *kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(d, 0));
    PyObject *flat = PyTuple_GET_ITEM(d, 3), *subs = PyTuple_GET_ITEM(d, 4);
    PyObject *names = PyTuple_GET_ITEM(d, 5), *offs = PyTuple_GET_ITEM(d, 6);
    if (kind == NULL)
        goto fail;
    t->kind = 255;
    for (int i = 1; node_kinds[i] != NULL; i++)
        if (strcmp(kind, node_kinds[i]) == 0)
            t->kind = (uint8_t)i;
    if (t->kind == 255) {
        if (!wit_code(PyTuple_GET_ITEM(d, 0), &t->w))
            goto fail;
        t->kind = N_SCALAR;
    }
    t->size = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(d, 1));
    t->align = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(d, 2));
    t->payload = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(d, 7));
    t->disc = (uint8_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(d, 8));
    if (PyErr_Occurred())
        goto fail;
    if (t->align == 0 || (t->align & (t->align - 1)) || !PyUnicode_Check(flat)
        || !PyTuple_Check(subs) || !PyTuple_Check(names) || !PyTuple_Check(offs)) {
        PyErr_SetString(PyExc_ValueError, "a plan node's layout");
        goto fail;
    }
    const char *fl = PyUnicode_AsUTF8(flat);
    if (fl == NULL)
        goto fail;
    t->nflat = (int)strlen(fl);
    if ((t->flat = PyMem_Malloc((size_t)t->nflat + 1)) == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    memcpy(t->flat, fl, (size_t)t->nflat + 1);
    Py_ssize_t ns = PyTuple_GET_SIZE(subs), nn = PyTuple_GET_SIZE(names);
    t->n = (int)(ns > nn ? ns : nn);
    if (t->kind == N_FLAGS && t->n > MAX_FLAGS) {
        PyErr_SetString(PyExc_ValueError, "too many flags");
        goto fail;
    }
    if (t->n > 0) {
        t->sub = PyMem_Calloc((size_t)t->n, sizeof *t->sub);
        t->name = PyMem_Calloc((size_t)t->n, sizeof *t->name);
        t->nlen = PyMem_Calloc((size_t)t->n, sizeof *t->nlen);
        t->off = PyMem_Calloc((size_t)t->n, sizeof *t->off);
        if (!t->sub || !t->name || !t->nlen || !t->off) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < ns; i++) {
        PyObject *s = PyTuple_GET_ITEM(subs, i);
        if (s != Py_None && (t->sub[i] = node_new(s, depth + 1)) == NULL)
            goto fail;
    }
    for (Py_ssize_t i = 0; i < nn; i++) {
        char *b;
        Py_ssize_t len;
        if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(names, i), &b, &len) < 0)
            goto fail;
        if ((t->name[i] = PyMem_Malloc((size_t)len + 1)) == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        memcpy(t->name[i], b, (size_t)len + 1);
        t->nlen[i] = (size_t)len;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(offs) && i < t->n; i++)
        t->off[i] = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(offs, i));
    if (PyErr_Occurred())
        goto fail;
    if ((t->kind == N_LIST && (ns != 1 || t->sub[0] == NULL))
        || ((t->kind == N_RECORD || t->kind == N_TUPLE) && PyTuple_GET_SIZE(offs) != ns)
        || ((t->kind == N_RECORD || t->kind == N_VARIANT || t->kind == N_RESULT
             || t->kind == N_OPTION) && nn != ns)
        || (t->kind >= N_VARIANT && t->kind <= N_RESULT && t->disc != 1 && t->disc != 2
            && t->disc != 4)) {
        PyErr_SetString(PyExc_ValueError, "a plan node's members");
        goto fail;
    }
    return t;
fail:
    node_free(t);
    return NULL;
}

static void
plan_free(PyObject *capsule)
{
    struct comp_plan *p = PyCapsule_GetPointer(capsule, "omnicore.comp_plan");
    if (p == NULL)
        return;
    node_free(p->params);
    node_free(p->result);
    PyMem_Free(p);
}

/* plan((params, result, spilled, memory)): params a tuple node, result a node or None. */
PyObject *
comp_plan_new(PyObject *Py_UNUSED(module), PyObject *desc)
{
    int spilled, memory;
    PyObject *params, *result;
    if (!PyArg_ParseTuple(desc, "OOpp", &params, &result, &spilled, &memory))
        return NULL;
    struct comp_plan *p = PyMem_Calloc(1, sizeof *p);
    if (p == NULL)
        return PyErr_NoMemory();
    p->spilled = spilled;
    p->memory = memory;
    if ((p->params = node_new(params, 0)) == NULL
        || (result != Py_None && (p->result = node_new(result, 0)) == NULL))
        goto fail;
    if (p->params->kind != N_TUPLE || (!spilled && p->params->nflat > MAX_CORE)) {
        PyErr_SetString(PyExc_ValueError, "plan parameters: a tuple of at most 16 core values");
        goto fail;
    }
    p->returned = p->result != NULL && p->result->nflat > 1;
    PyObject *capsule = PyCapsule_New(p, "omnicore.comp_plan", plan_free);
    if (capsule != NULL)
        return capsule;
fail:
    node_free(p->params);
    node_free(p->result);
    PyMem_Free(p);
    return NULL;
}

const struct comp_plan *
comp_plan_of(PyObject *capsule)
{
    return PyCapsule_GetPointer(capsule, "omnicore.comp_plan");
}

int
comp_plan_needs_memory(const struct comp_plan *plan)
{
    return plan->memory;
}

/* 1 if the plan flattens to the face's core signature; else 0 with a ValueError. */
int
comp_plan_fits(const struct comp_plan *plan, const Face *f)
{
    int params = plan->spilled ? f->nparams == 1 && f->core[0] == 'i'
        : f->nparams == plan->params->nflat && memcmp(f->core, plan->params->flat,
                                                      (size_t)f->nparams) == 0;
    const node *r = plan->result;
    int result = r == NULL ? f->result == 0
        : plan->returned ? f->result == 'i' : r->nflat == 1 && f->result == r->flat[0];
    if (params && result)
        return 1;
    PyErr_SetString(PyExc_ValueError, "the plan does not flatten to the face's core signature");
    return 0;
}

/* --- one call ------------------------------------------------------------------------- */

/* What the first pass read of a scalar or string, for the second to take as read: its raw
 * core word (a string's length), the string's bytes, and where the value ended. */
typedef struct {
    uint64_t raw;
    const char *s, *end;
} read_t;

/* Values the first pass keeps for the second (past that many, the second reads again). */
#define TAPE 64

typedef struct {
    Face *f;
    int dry;                  /* the first pass: check, count, call nothing */
    read_t *tape;             /* the first pass's scalars and strings, in order */
    size_t ntape, tnext;      /* how many it kept, how many the second pass took */
    uint32_t *counts;         /* each list's length, in the order the lists begin */
    size_t ncounts, cap, next;
    uint64_t msize;           /* the memory's size, as last read */
    char *out;                /* the answer's JSON: in the caller's buffer, then the heap's */
    size_t len, room;
    int heap;                 /* out is PyMem's */
} cx;

/* 1: parsed (and lowered); 0: not plain (first pass only); -1: an exception. */
enum { BAD = 0, OK = 1, ERR = -1 };

static int
count_slot(cx *c, size_t *slot)
{
    if (c->ncounts == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        uint32_t *n = PyMem_Realloc(c->counts, cap * sizeof *n);
        if (n == NULL) {
            PyErr_NoMemory();
            return 0;
        }
        c->counts = n;
        c->cap = cap;
    }
    *slot = c->ncounts++;
    return 1;
}

/* realloc(0, 0, align, n) through the guest, checked as canonabi.Cx.realloc checks it. */
static int
guest_alloc(cx *c, uint32_t align, uint32_t n, uint32_t *ptr)
{
    Face *f = c->f;
    if (!guest_realloc(f, align, n, ptr))
        return 0;
    if (*ptr % align) {
        canon_trap("realloc return: result not aligned");
        return 0;
    }
    if (!memory_size_now(f, &c->msize))
        return 0;
    if ((uint64_t)*ptr + n > c->msize) {
        canon_trap("realloc return: beyond end of memory");
        return 0;
    }
    return 1;
}

/* JSON whitespace skipped (_compcall.c's skip_ws, inline: it runs between every two values). */
static inline const char *
ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
        p++;
    return p;
}

static inline const char *
expect(const char *p, const char *end, char ch)
{
    p = ws(p, end);
    return p < end && *p == ch ? ws(p + 1, end) : NULL;
}

/* What follows a JSON array's item (its spaces skipped): 1 at a ',' (p past it and the spaces
 * after), 0 at the closing ']' (p past it), -1 at anything else. */
static inline int
next_item(const char **pp, const char *end)
{
    const char *p = ws(*pp, end);
    if (p < end && (*p == ',' || *p == ']')) {
        *pp = *p == ',' ? ws(p + 1, end) : p + 1;
        return *p == ',';
    }
    return -1;
}

/* A plain JSON string equal to one of t's names; its index, -1 if none. */
static int
name_index(const node *t, const char **pp, const char *end)
{
    const char *s;
    Py_ssize_t n;
    if (!parse_string(pp, end, &s, &n))
        return -1;
    for (int i = 0; i < t->n; i++)
        if (t->nlen[i] == (size_t)n + 2 && memcmp(t->name[i] + 1, s, (size_t)n) == 0)
            return i;
    return -1;
}

static int lower(cx *c, const node *t, const char **pp, const char *end, uint64_t *flat,
                 uint8_t *mem);

/* The value of a scalar's cval as a raw core word. */
static inline uint64_t
raw_of(const cval *v, uint8_t w)
{
    return (w == W_S64 || w == W_U64 || w == W_F64) ? v->of.u64 : v->of.u32;
}

static const uint8_t scalar_width[] = {[W_BOOL] = 1, [W_S8] = 1, [W_U8] = 1, [W_S16] = 2,
                                       [W_U16] = 2, [W_S32] = 4, [W_U32] = 4, [W_S64] = 8,
                                       [W_U64] = 8, [W_F32] = 4, [W_F64] = 8, [W_CHAR] = 4};

/* A list or string at *pp: (ptr, len) into flat or mem. */
static int
lower_list(cx *c, const node *t, const char **pp, const char *end, uint64_t *flat,
           uint8_t *mem)
{
    uint32_t ptr = 0, n;
    if (t->kind == N_STRING) {
        const char *s;
        Py_ssize_t len;
        if (!c->dry && c->tnext < c->ntape) {  /* the first pass read it: the JSON is the same */
            const read_t *r = &c->tape[c->tnext++];
            s = r->s;
            len = (Py_ssize_t)r->raw;
            *pp = r->end;
        } else {
            if (!parse_string(pp, end, &s, &len))
                return BAD;
            if (c->dry) {
                if (c->ntape < TAPE)
                    c->tape[c->ntape++] = (read_t){(uint64_t)len, s, *pp};
                return OK;
            }
        }
        n = (uint32_t)len;
        if (!guest_alloc(c, 1, n, &ptr))
            return ERR;
        memcpy(c->f->base + ptr, s, n);
    } else {
        const node *e = t->sub[0];
        const char *p = expect(*pp, end, '[');
        if (p == NULL)
            return BAD;
        size_t slot = 0;
        if (c->dry) {
            if (!count_slot(c, &slot))
                return ERR;
        } else {
            n = c->counts[c->next++];
            if (!guest_alloc(c, e->align, n * e->size, &ptr))
                return ERR;
        }
        uint32_t i = 0;
        int more = 0;  /* what follows the last item (next_item): 0, the list's end */
        if (p < end && *p == ']') {
            p++;
        } else if (e->kind == N_SCALAR && e->w == W_U8) {
            /* Bytes: each a plain 0-255 without a sign or a leading zero, in one tight loop
             * (anything else is not plain here; parse_scalar's other spellings go to
             * Python). */
            uint8_t *dst = c->dry ? NULL : c->f->base + ptr;
            do {
                unsigned v = 0;
                const char *q = p;
                while (q < end && (unsigned)(*q - '0') < 10 && q - p < 4)
                    v = v * 10 + (unsigned)(*q++ - '0');
                if (q == p || q - p > 3 || v > 255 || (*p == '0' && q - p > 1))
                    return BAD;
                if (dst != NULL)
                    dst[i] = (uint8_t)v;
                p = q;
                i++;
            } while ((more = next_item(&p, end)) > 0);
        } else {
            do {
                if (i >= UINT32_MAX / (e->size ? e->size : 1))
                    return BAD;
                int r = lower(c, e, &p, end, NULL,
                              c->dry ? NULL : c->f->base + ptr + (uint64_t)i * e->size);
                if (r != OK)
                    return r;
                i++;
            } while ((more = next_item(&p, end)) > 0);
        }
        if (more < 0)
            return BAD;
        *pp = p;
        if (c->dry) {
            c->counts[slot] = i;
            return OK;
        }
        n = i;
    }
    if (flat != NULL) {
        flat[0] = ptr;
        flat[1] = n;
    } else {
        memcpy(mem, &ptr, 4);
        memcpy(mem + 4, &n, 4);
    }
    return OK;
}

/* One JSON value of t at *pp: checked (first pass), or lowered into `flat` (t->nflat raw core
 * words: lower_flat) or stored at `mem` (store); the other is NULL. */
static int
lower(cx *c, const node *t, const char **pp, const char *end, uint64_t *flat, uint8_t *mem)
{
    const char *p = ws(*pp, end);
    int r, i;
    switch (t->kind) {
    case N_SCALAR: {
        uint64_t raw;
        if (!c->dry && c->tnext < c->ntape) {  /* the first pass read it: the JSON is the same */
            raw = c->tape[c->tnext].raw;
            *pp = c->tape[c->tnext++].end;
        } else {
            cval v;
            memset(&v, 0, sizeof v);
            if (!parse_scalar(&p, end, t->w, &v))
                return BAD;
            *pp = p;
            raw = raw_of(&v, t->w);
            if (c->dry) {
                if (c->ntape < TAPE)
                    c->tape[c->ntape++] = (read_t){raw, NULL, p};
                return OK;
            }
        }
        if (flat != NULL)
            flat[0] = raw;
        else
            memcpy(mem, &raw, scalar_width[t->w]);  /* little-endian, as wasm's memory */
        return OK;
    }
    case N_STRING:
    case N_LIST:
        r = lower_list(c, t, &p, end, flat, mem);
        if (r == OK)
            *pp = p;
        return r;
    case N_RECORD:
    case N_TUPLE: {
        int record = t->kind == N_RECORD;
        if (p >= end || *p != (record ? '{' : '['))
            return BAD;
        p = ws(p + 1, end);
        int k = 0;
        for (i = 0; i < t->n; i++) {
            if (i > 0 && (p = expect(p, end, ',')) == NULL)
                return BAD;
            if (record) {
                if ((size_t)(end - p) < t->nlen[i] || memcmp(p, t->name[i], t->nlen[i]) != 0)
                    return BAD;
                if ((p = expect(p + t->nlen[i], end, ':')) == NULL)
                    return BAD;
            }
            const node *m = t->sub[i];
            r = lower(c, m, &p, end, flat != NULL ? flat + k : NULL,
                      mem != NULL ? mem + t->off[i] : NULL);
            if (r != OK)
                return r;
            k += m->nflat;
        }
        p = ws(p, end);
        if (p >= end || *p != (record ? '}' : ']'))
            return BAD;
        *pp = p + 1;
        return OK;
    }
    case N_FLAGS: {
        uint32_t words[MAX_FLAGS / 32] = {0};
        if (p >= end || *p != '[')
            return BAD;
        p = ws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
        } else {
            int more;
            do {
                if ((i = name_index(t, &p, end)) < 0 || (words[i / 32] >> (i % 32) & 1))
                    return BAD;  /* not a flag, or twice: Python's refusal */
                words[i / 32] |= 1u << (i % 32);
            } while ((more = next_item(&p, end)) > 0);
            if (more < 0)
                return BAD;
        }
        *pp = p;
        if (c->dry)
            return OK;
        if (flat != NULL)
            for (i = 0; i < t->nflat; i++)
                flat[i] = words[i];
        else
            memcpy(mem, words, t->size);
        return OK;
    }
    default: break;
    }
    /* variant, enum, option, result: the case and its payload */
    const node *payload = NULL;
    if (t->kind == N_ENUM) {
        if ((i = name_index(t, &p, end)) < 0)
            return BAD;
    } else if (t->kind == N_OPTION) {
        if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
            i = 0;
            p += 4;
        } else {
            i = 1;
            payload = t->sub[1];
        }
    } else {
        if (p >= end || *p != '{')
            return BAD;
        p = ws(p + 1, end);
        if ((i = name_index(t, &p, end)) < 0 || (p = expect(p, end, ':')) == NULL)
            return BAD;
        payload = t->sub[i];
        if (payload == NULL) {
            if (end - p < 4 || memcmp(p, "null", 4) != 0)
                return BAD;
            p += 4;
        }
    }
    if (payload != NULL) {
        if (!c->dry && flat != NULL)
            memset(flat + 1, 0, (size_t)(t->nflat - 1) * sizeof *flat);
        r = lower(c, payload, &p, end, flat != NULL ? flat + 1 : NULL,
                  mem != NULL ? mem + t->payload : NULL);
        if (r != OK)
            return r;
    }
    if (t->kind == N_VARIANT || t->kind == N_RESULT) {
        p = ws(p, end);
        if (p >= end || *p != '}')
            return BAD;
        p++;
    }
    *pp = p;
    if (c->dry)
        return OK;
    if (flat != NULL) {
        flat[0] = (uint32_t)i;
        if (payload == NULL)
            memset(flat + 1, 0, (size_t)(t->nflat - 1) * sizeof *flat);
    } else {
        uint32_t d = (uint32_t)i;
        memcpy(mem, &d, t->disc);
    }
    return OK;
}

/* --- lifting into JSON ------------------------------------------------------------------ */

static int
room(cx *c, size_t n)
{
    if (c->len + n <= c->room)
        return 1;
    size_t cap = c->room ? c->room : 256;
    while (cap < c->len + n)
        cap *= 2;
    char *o;
    if (c->heap) {
        o = PyMem_Realloc(c->out, cap);
    } else {  /* out of the caller's buffer: the text so far moves to the heap */
        o = PyMem_Malloc(cap);
        if (o != NULL && c->len)
            memcpy(o, c->out, c->len);
    }
    if (o == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    c->out = o;
    c->room = cap;
    c->heap = 1;
    return 1;
}

static int
put(cx *c, const char *s, size_t n)
{
    if (!room(c, n))
        return 0;
    memcpy(c->out + c->len, s, n);
    c->len += n;
    return 1;
}

/* A scalar's JSON from its raw word (masked to its core width by the caller). */
static int
put_scalar(cx *c, uint8_t w, uint64_t raw)
{
    cval v;
    memset(&v, 0, sizeof v);
    v.of.u64 = raw;
    if (!room(c, 80))
        return 0;
    Py_ssize_t n = format_result(&v, w, c->out + c->len);
    if (n < 0)
        return 0;
    c->len += (size_t)n;
    return 1;
}

/* Bytes the guest holds as a JSON string (json_text, _compcall.c: UTF-8 checked, escaped). */
static int
put_text(cx *c, const uint8_t *s, uint32_t n)
{
    size_t plain = (size_t)(skip_plain(s, s + n) - s);
    if (!room(c, plain == n ? (size_t)n + 2 : (size_t)n * 6 + 2))
        return 0;
    char *end = json_text(c->out + c->len, s, n, plain);
    if (end == NULL)
        return 0;
    c->len = (size_t)(end - c->out);
    return 1;
}

static int load(cx *c, const node *t, uint32_t at);

static int
span(cx *c, uint64_t ptr, uint64_t n, const char *what)
{
    if (ptr + n > c->msize) {
        char text[80];
        snprintf(text, sizeof text, "%s out of bounds of memory", what);
        canon_trap(text);
        return 0;
    }
    return 1;
}

/* A string or list the guest placed at (ptr, n), as canonabi's _list_reader reads it. */
static int
put_list(cx *c, const node *t, uint32_t ptr, uint32_t n)
{
    if (t->kind == N_STRING)
        return span(c, ptr, n, "string pointer/length") && put_text(c, c->f->base + ptr, n);
    const node *e = t->sub[0];
    if (!span(c, ptr, (uint64_t)n * e->size, "list pointer/length"))
        return 0;
    if (ptr % e->align) {
        canon_trap("list pointer is not aligned");
        return 0;
    }
    if (!put(c, "[", 1))
        return 0;
    if (e->kind == N_SCALAR && e->w == W_U8) {
        if (!room(c, (size_t)n * 4 + 1))
            return 0;
        const uint8_t *b = c->f->base + ptr;
        char *o = c->out + c->len;
        for (uint32_t i = 0; i < n; i++) {
            unsigned v = b[i];
            if (i)
                *o++ = ',';
            if (v >= 100)
                *o++ = (char)('0' + v / 100);
            if (v >= 10)
                *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
        }
        c->len = (size_t)(o - c->out);
    } else {
        for (uint32_t i = 0; i < n; i++)
            if ((i && !put(c, ",", 1)) || !load(c, e, ptr + i * e->size))
                return 0;
    }
    return put(c, "]", 1);
}

static int
put_name(cx *c, const node *t, int i)
{
    return put(c, t->name[i], t->nlen[i]);
}

static int
put_flags(cx *c, const node *t, const uint32_t *words)
{
    int first = 1;
    if (!put(c, "[", 1))
        return 0;
    for (int i = 0; i < t->n; i++)
        if (words[i / 32] >> (i % 32) & 1) {
            if ((!first && !put(c, ",", 1)) || !put_name(c, t, i))
                return 0;
            first = 0;
        }
    return put(c, "]", 1);
}

/* Case i of a variant-like t with its payload lifted by `lift_payload` (canonabi._maker). */
static int
bad_case(const node *t, uint32_t i)
{
    char text[80];
    snprintf(text, sizeof text, "invalid %s discriminant: %u", node_kinds[t->kind],
             (unsigned)i);
    canon_trap(text);
    return 0;
}

static int
case_open(cx *c, const node *t, int i)
{
    if (t->kind == N_ENUM)
        return put_name(c, t, i);
    if (t->kind == N_OPTION)
        return i == 0 ? put(c, "null", 4) : 1;
    return put(c, "{", 1) && put_name(c, t, i) && put(c, ":", 1)
        && (t->sub[i] != NULL || put(c, "null", 4));
}

static int
case_close(cx *c, const node *t)
{
    return t->kind == N_VARIANT || t->kind == N_RESULT ? put(c, "}", 1) : 1;
}

/* lift_flat: the JSON of t from its raw core words at flat. */
static int
lift(cx *c, const node *t, const uint64_t *flat)
{
    switch (t->kind) {
    case N_SCALAR: {
        uint64_t raw = flat[0];
        if (t->w != W_S64 && t->w != W_U64 && t->w != W_F64)
            raw &= 0xFFFFFFFFu;  /* an i32/f32 from a wider joined slot: wrapped */
        return put_scalar(c, t->w, raw);
    }
    case N_STRING:
    case N_LIST:
        return put_list(c, t, (uint32_t)flat[0], (uint32_t)flat[1]);
    case N_RECORD:
    case N_TUPLE: {
        int record = t->kind == N_RECORD;
        if (!put(c, record ? "{" : "[", 1))
            return 0;
        int k = 0;
        for (int i = 0; i < t->n; i++) {
            if ((i && !put(c, ",", 1)) || (record && (!put_name(c, t, i) || !put(c, ":", 1)))
                || !lift(c, t->sub[i], flat + k))
                return 0;
            k += t->sub[i]->nflat;
        }
        return put(c, record ? "}" : "]", 1);
    }
    case N_FLAGS: {
        uint32_t words[MAX_FLAGS / 32] = {0};
        for (int i = 0; i < t->nflat; i++)
            words[i] = (uint32_t)flat[i];
        return put_flags(c, t, words);
    }
    default: break;
    }
    uint32_t i = (uint32_t)flat[0];
    if (i >= (uint32_t)t->n)
        return bad_case(t, i);
    if (!case_open(c, t, (int)i))
        return 0;
    if (t->sub[i] != NULL && !lift(c, t->sub[i], flat + 1))
        return 0;
    return case_close(c, t);
}

/* load: the JSON of t at `at` (in bounds and aligned: the caller checked). */
static int
load(cx *c, const node *t, uint32_t at)
{
    const uint8_t *m = c->f->base + at;
    switch (t->kind) {
    case N_SCALAR: {
        uint64_t raw = 0;
        memcpy(&raw, m, scalar_width[t->w]);
        switch (t->w) {  /* sign-extended as the core value would be */
        case W_S8: raw = (uint32_t)(int32_t)(int8_t)raw; break;
        case W_S16: raw = (uint32_t)(int32_t)(int16_t)raw; break;
        default: break;
        }
        return put_scalar(c, t->w, raw);
    }
    case N_STRING:
    case N_LIST: {
        uint32_t pair[2];
        memcpy(pair, m, 8);
        return put_list(c, t, pair[0], pair[1]);
    }
    case N_RECORD:
    case N_TUPLE: {
        int record = t->kind == N_RECORD;
        if (!put(c, record ? "{" : "[", 1))
            return 0;
        for (int i = 0; i < t->n; i++)
            if ((i && !put(c, ",", 1)) || (record && (!put_name(c, t, i) || !put(c, ":", 1)))
                || !load(c, t->sub[i], at + t->off[i]))
                return 0;
        return put(c, record ? "}" : "]", 1);
    }
    case N_FLAGS: {
        uint32_t words[MAX_FLAGS / 32] = {0};
        memcpy(words, m, t->size);
        return put_flags(c, t, words);
    }
    default: break;
    }
    uint32_t i = 0;
    memcpy(&i, m, t->disc);
    if (i >= (uint32_t)t->n)
        return bad_case(t, i);
    if (!case_open(c, t, (int)i))
        return 0;
    if (t->sub[i] != NULL && !load(c, t->sub[i], at + t->payload))
        return 0;
    return case_close(c, t);
}

/* --- the call ---------------------------------------------------------------------------- */

/* The arguments at data, or none for empty input without parameters: BAD, OK or ERR. */
static int
lower_args(cx *c, const node *params, const char *p, const char *end, uint64_t *flat,
           uint8_t *mem)
{
    p = ws(p, end);
    if (p == end && params->n == 0)
        return OK;
    int r = lower(c, params, &p, end, flat, mem);
    if (r != OK)
        return r;
    return ws(p, end) == end ? OK : BAD;
}

static PyObject *
answer(cx *c, const struct comp_plan *plan)
{
    Face *f = c->f;
    const node *t = plan->result;
    if (t == NULL)
        return put(c, "null", 4) ? Py_None : NULL;  /* a non-NULL mark: see below */
    if (plan->memory && !memory_size_now(f, &c->msize))
        return NULL;
    if (plan->returned) {
        uint32_t area = f->out.of.u32;
        if (area % t->align)
            return canon_trap("return pointer not aligned");
        if (!span(c, area, t->size, "return pointer") || !load(c, t, area))
            return NULL;
        return Py_None;
    }
    uint64_t raw = 0;
    switch (f->result) {
    case 'q': case 'd': raw = f->out.of.u64; break;
    default: raw = f->out.of.u32; break;
    }
    return lift(c, t, &raw) ? Py_None : NULL;
}

PyObject *
comp_call_plan(Face *f, PyObject *data, PyObject *epoch)
{
    const struct comp_plan *plan = f->plan;
    if (plan->memory && (f->base == NULL || (plan->spilled && f->realloc == NULL)))
        Py_RETURN_NOTIMPLEMENTED;  /* no memory known: the Python path says why */
    const char *p = PyBytes_AS_STRING(data), *end = p + PyBytes_GET_SIZE(data);
    read_t tape[TAPE];
    char text[512];  /* most answers' JSON fits */
    cx c = {.f = f, .dry = 1, .tape = tape, .out = text, .room = sizeof text};
    PyObject *out = NULL;
    uint64_t flat[MAX_CORE];
    int r = lower_args(&c, plan->params, p, end, NULL, NULL);
    if (r != OK) {
        if (r == BAD)
            out = Py_NewRef(Py_NotImplemented);
        goto done;
    }
    if (!arm(f, epoch))
        goto done;
    c.dry = 0;
    if (plan->spilled) {
        uint32_t ptr;
        if (!guest_alloc(&c, plan->params->align, plan->params->size, &ptr)
            || lower_args(&c, plan->params, p, end, NULL, f->base + ptr) != OK)
            goto done;
        f->params[0].of.u32 = ptr;
    } else {
        if (lower_args(&c, plan->params, p, end, flat, NULL) != OK)
            goto done;
        for (int i = 0; i < f->nparams; i++)
            set_payload(&f->params[i], f->core[i] == 'q' || f->core[i] == 'd' ? 'q' : 'i',
                        flat[i], 0.0);
    }
    if (!run_face(f) || answer(&c, plan) == NULL)
        goto done;
    out = after_post(f, PyBytes_FromStringAndSize(c.out, (Py_ssize_t)c.len));
done:
    PyMem_Free(c.counts);
    if (c.heap)
        PyMem_Free(c.out);
    return out;
}
