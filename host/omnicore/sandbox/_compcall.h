/* What the files of the C component call path share (_compcall.c: the Face, its JSON lane
 * for scalars and strings, host callbacks; _compvalue.c: every other WIT type lowered from
 * JSON and lifted to JSON by a plan computed once per export): wasmtime's component value,
 * the Face, the wasmtime functions bound at import, and the helpers both files call. */
#ifndef OMNICORE_COMPCALL_H
#define OMNICORE_COMPCALL_H

#include "_capi.h"
#include "_deadline.h"

#include <stddef.h>

/* Core parameters of a face: the canonical ABI passes at most 16 (more go through memory). */
#define MAX_CORE 16

/* wasmtime_component_val_t: a kind byte, then the payload union (24 bytes) at offset 8. A
 * string is a wasm_name_t (size, data): as a parameter, bytes wasmtime copies (they stay the
 * caller's; they must be valid UTF-8, or wasmtime aborts the process). */
typedef struct {
    uint8_t kind;
    union {
        uint32_t u32;
        uint64_t u64;
        float f32;
        double f64;
        struct {
            size_t size;
            const char *data;
        } string;
        uint8_t bytes[24];
    } of;
} cval;

/* A core value's payload as its core type ('i' i32, 'q' i64, 'f' f32, 'd' f64) holds it: an
 * integer's low bits `u`, a float's value `d` (an f32's rounded). */
static inline void
set_payload(cval *v, char core, uint64_t u, double d)
{
    switch (core) {
    case 'i': v->of.u32 = (uint32_t)u; break;
    case 'q': v->of.u64 = u; break;
    case 'f': v->of.f32 = (float)d; break;
    default: v->of.f64 = d;
    }
}

typedef void *(*comp_call_fn)(const void *func, void *ctx, const cval *args, size_t nargs,
                              cval *results, size_t nresults);
typedef void *(*comp_post_fn)(const void *func, void *ctx);

/* WIT scalars, as call() lowers and lifts them. */
enum { W_NONE, W_BOOL, W_S8, W_U8, W_S16, W_U16, W_S32, W_U32, W_S64, W_U64, W_F32, W_F64,
       W_CHAR, W_STRING };

struct comp_plan;  /* _compvalue.c */

typedef struct {
    PyObject_HEAD
    void *ctx;            /* wasmtime_context_t* of the instance's store */
    const void *func;     /* wasmtime_component_func_t* of the face */
    const void *post;     /* ... of its post-return face, or NULL */
    const void *realloc;  /* ... of its realloc face, or NULL */
    unsigned long long ticks;
    long long armed;      /* the moment this face last armed the deadline at, -1: none */
    PyObject *clock_obj;  /* the engine Ticker's clock capsule, which keeps `clock` alive */
    EpochClock *clock;    /* what the door (_deadline.h) arms from */
    int nparams;
    char core[MAX_CORE];  /* each core parameter: 'i' i32, 'q' i64, 'f' f32, 'd' f64, 's' a
                           * string the face keeps (canonplan: wasmtime lowers it) */
    char result;          /* the core result, 0 for none */
    int scalar;           /* call() may be used: every WIT type a scalar */
    int plain;            /* call_json() may be used: scalars and strings (with memory) */
    int nwit;             /* WIT parameters */
    uint8_t wit[MAX_CORE];  /* each one's WIT type */
    uint8_t wit_result;   /* W_NONE: no result */
    PyObject *memory;     /* the instance's one linear memory (its base never moves), or NULL */
    uint8_t *base;
    PyObject *plan_obj;   /* the export's plan (a capsule of _compvalue.c), or NULL */
    const struct comp_plan *plan;
    int pending;          /* call_core() returned; post_core() has not run yet */
    cval params[MAX_CORE];
    cval out;
    cval grow[4];         /* realloc(0, 0, align, size) */
    cval at;
} Face;

/* _compcall.c */
extern comp_call_fn comp_call;
extern comp_post_fn comp_post;
extern PyObject *failed_type, *trap_type, *text_fn;
int wit_code(PyObject *name, uint8_t *out);
int arm(Face *self, PyObject *epoch);
int run_face(Face *self);
PyObject *after_post(Face *self, PyObject *out);
PyObject *canon_trap(const char *text);
const unsigned char *utf8_end(const unsigned char *p, const unsigned char *e);
PyObject *utf8_trap(const uint8_t *s, size_t n);
char *json_text(char *o, const uint8_t *s, size_t n, size_t plain);
int memory_size_now(Face *self, uint64_t *out);
int guest_realloc(Face *self, uint32_t align, uint32_t size, uint32_t *ptr);
const char *skip_ws(const char *p, const char *end);
int parse_scalar(const char **pp, const char *end, uint8_t w, cval *v);
int parse_string(const char **pp, const char *end, const char **s, Py_ssize_t *n);
Py_ssize_t format_result(const cval *v, uint8_t w, char *buf);
int utf8_char(const unsigned char *s, const unsigned char *end);
const unsigned char *skip_ascii(const unsigned char *p, const unsigned char *e);
const unsigned char *skip_plain(const unsigned char *p, const unsigned char *e);
int word_escapes_at(const unsigned char *p);
PyObject *json_float(double d);
int face_check(PyObject *o);
PyObject *face_call_json(Face *self, PyObject *data, PyObject *epoch);

/* _compvalue.c */
PyObject *comp_plan_new(PyObject *module, PyObject *desc);
const struct comp_plan *comp_plan_of(PyObject *capsule);
int comp_plan_needs_memory(const struct comp_plan *plan);
int comp_plan_fits(const struct comp_plan *plan, const Face *f);
PyObject *comp_call_plan(Face *self, PyObject *data, PyObject *epoch);

/* _comphost.c */
extern uint8_t kind_bool;
extern PyTypeObject HostCallType;
void *host_callback(void *env, void *ctx, const void *ty, const cval *args, size_t nargs,
                    cval *results, size_t nresults);

/* _complane.c */
extern PyTypeObject LaneType;
int lane_strings(void);

#endif
