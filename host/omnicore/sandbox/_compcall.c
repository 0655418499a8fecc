/* The component call path in C: one Python call arms the deadline, writes the arguments into
 * preallocated C values, calls a flat face of a component export (sandbox/component/
 * canonplan.py) with wasmtime_component_func_call, then its post-return, and hands back the
 * result (issue 47).
 *
 * Why C: through ctypes each of those steps is a C call converting its arguments and dropping
 * and re-taking the GIL, and the C values were packed and unpacked with struct: ~4 µs of a
 * ~8 µs u32 call. Here they are one call. sandbox/component/flatcall.py is the other
 * implementation of the same contract (used when this module was not built, or
 * OMNICORE_CALLPATH=python); the component tests run on both.
 *
 * A Face has two ways in:
 * - call(args, epoch): for an export whose parameters and result are all WIT scalars (bool,
 *   integers, floats, char): the JSON values (already checked against their types by the
 *   runtime) are lowered here, the result lifted here into its JSON value (an f32/f64 NaN or
 *   infinity as "nan", "inf", "-inf"; an invalid char traps as canonabi.py's lift does);
 * - call_json(data, epoch): the call's JSON bytes in, the result's JSON bytes out, for
 *   scalars and strings here (the JSON lane below: a string parameter is kept on the face,
 *   handed to wasmtime as one C value and lowered by it within the call, canonplan.py), for
 *   every other canonical signature by the export's plan (_compvalue.c); NotImplemented when
 *   the JSON is not plainly the arguments (nothing ran);
 * - arm(epoch), call_core(values, None) then post_core(): for every other canonical face:
 *   Python lowers into core values (and guest memory, through alloc(), after arm(): the
 *   guest's realloc runs under the call's deadline) and lifts the core result; the face's
 *   post-return function (its own face) runs when Python has read the answer.
 *
 * epoch: the deadline (`ticks` from now) is armed through the door (_deadline.h) from the
 * engine's clock (the `clock` the Face was made with), only when it moved since this face last
 * armed it (it would be identical: as _callpath.c does); -1 arms always; None not at all (the
 * caller armed it: a descriptor watch). Any other int: arm when the clock moved.
 *
 * Failures: wasmtime's error is raised as the `failed` exception class given to bind()
 * (flatcall._CallFailed) with the error's address, which the caller owns and frees; a
 * canonical-ABI trap of the lift as the `trap` class (canonabi._CanonTrap) with its message.
 *
 * The module's other files, sharing _compcall.h: _compvalue.c (each export's plan: every
 * other WIT type lowered from JSON and lifted to JSON), _complane.c (Lane:
 * ComponentRuntime.call's hot path around call_json) and _comphost.c (HostCall: the C
 * callback of component host functions).
 *
 * wasmtime's functions are not linked: their addresses come from the library wasmtime-py
 * loaded (bind()), and the C value's layout is checked by Python against wasmtime-py's
 * (VAL_SIZE, VAL_OF) before anything is called.
 */
#include "_compcall.h"

#include <math.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <structmember.h>
#include <string.h>

comp_call_fn comp_call;
comp_post_fn comp_post;
static set_deadline_fn set_deadline;
/* wasmtime_component_valkind_t of U32, U64, F32, F64 (the kinds a face's core values have)
 * and STRING (a string parameter the face keeps). */
static uint8_t kind_u32, kind_u64, kind_f32, kind_f64, kind_string;
PyObject *failed_type, *trap_type, *text_fn;
static PyObject *str_nan, *str_inf, *str_minus_inf, *str_size;

static const char *const wit_names[] = {"", "bool", "s8", "u8", "s16", "u16", "s32", "u32",
                                        "s64", "u64", "f32", "f64", "char", "string", NULL};

static uint8_t
kind_of(char c)
{
    switch (c) {
    case 'i': return kind_u32;
    case 'q': return kind_u64;
    case 'f': return kind_f32;
    case 's': return kind_string;
    default: return kind_f64;
    }
}

int
wit_code(PyObject *name, uint8_t *out)
{
    const char *s = PyUnicode_AsUTF8(name);
    if (s == NULL)
        return 0;
    for (int i = 1; wit_names[i] != NULL; i++)
        if (strcmp(s, wit_names[i]) == 0) {
            *out = (uint8_t)i;
            return 1;
        }
    PyErr_Format(PyExc_ValueError, "not a WIT scalar: %s", s);
    return 0;
}

/* The core type a WIT scalar flattens to (a string: two i32). */
static char
core_of(uint8_t w)
{
    switch (w) {
    case W_S64: case W_U64: return 'q';
    case W_F32: return 'f';
    case W_F64: return 'd';
    default: return 'i';
    }
}

/* The instance's LinearMemory `memory` (its base never moves) into self; 0 with an exception. */
static int
take_memory(Face *self, PyObject *memory)
{
    PyObject *base = PyObject_GetAttrString(memory, "base");
    if (base == NULL)
        return 0;
    void *b = PyLong_AsVoidPtr(base);
    Py_DECREF(base);
    if (b == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "memory.base is null");
        return 0;
    }
    self->memory = Py_NewRef(memory);
    self->base = (uint8_t *)b;
    return 1;
}

/* Face(ctx, func, post, realloc, core_params, core_result, ticks, wit_params, wit_result,
 * memory): addresses as ints (0: none); core types as a str of 'i', 'q', 'f', 'd' and 's' (a
 * string parameter the face keeps, which wasmtime lowers: canonplan); wit_params a tuple of
 * WIT scalar or "string" names (or None: only call_core), wit_result one (or None: no
 * result); memory the instance's LinearMemory (.memory), needed for strings in memory; plan
 * (instead of wit_params and wit_result) the export's plan(), for any other canonical
 * signature. */
static int
Face_init(Face *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"ctx", "func", "post", "realloc", "core_params", "core_result",
                            "ticks", "wit_params", "wit_result", "memory", "plan", "clock", NULL};
    PyObject *ctx, *func, *post, *realloc_, *wit_params = Py_None, *wit_result = Py_None;
    PyObject *memory = Py_None, *plan = Py_None, *clock = NULL;
    const char *core, *result;
    unsigned long long ticks;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOssK|OOOO$O", names, &ctx, &func, &post,
                                     &realloc_, &core, &result, &ticks, &wit_params,
                                     &wit_result, &memory, &plan, &clock))
        return -1;
    /* The engine Ticker's clock (its `clock` capsule): the door arms from it. */
    EpochClock *epochs = clock == NULL ? NULL : PyCapsule_GetPointer(clock, EPOCH_CLOCK_CAPSULE);
    if (epochs == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "Face(..., clock=): the engine Ticker's clock");
        return -1;
    }
    if (comp_call == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind() the wasmtime functions first");
        return -1;
    }
    void *c, *f, *p, *r;
    if (!as_pointer(ctx, &c) || !as_pointer(func, &f) || !as_pointer(post, &p)
        || !as_pointer(realloc_, &r))
        return -1;
    if (c == NULL || f == NULL) {
        PyErr_SetString(PyExc_ValueError, "ctx and func must be non-null addresses");
        return -1;
    }
    size_t n = strlen(core);
    if (n > MAX_CORE || strlen(result) > 1 || strspn(core, "iqfds") != n
        || strspn(result, "iqfd") != strlen(result)) {
        PyErr_SetString(PyExc_ValueError,
                        "core types: at most 16 of 'i', 'q', 'f', 'd', 's' (a result not 's')");
        return -1;
    }
    self->ctx = c;
    self->func = f;
    self->post = p;
    self->realloc = r;
    self->ticks = ticks;
    self->armed = -1;
    Py_XSETREF(self->clock_obj, Py_NewRef(clock));
    self->clock = epochs;
    self->nparams = (int)n;
    memcpy(self->core, core, n);
    self->result = result[0];
    self->pending = 0;
    memset(self->params, 0, sizeof self->params);
    for (size_t i = 0; i < n; i++)
        self->params[i].kind = kind_of(core[i]);
    memset(&self->out, 0, sizeof self->out);
    if (self->result)
        self->out.kind = kind_of(self->result);
    memset(self->grow, 0, sizeof self->grow);
    for (int i = 0; i < 4; i++)
        self->grow[i].kind = kind_u32;
    memset(&self->at, 0, sizeof self->at);
    self->at.kind = kind_u32;
    self->scalar = self->plain = 0;
    self->nwit = 0;
    self->wit_result = W_NONE;
    Py_CLEAR(self->memory);
    self->base = NULL;
    Py_CLEAR(self->plan_obj);
    self->plan = NULL;
    if (plan != Py_None) {
        /* Every other canonical signature: call_json() through the plan (_compvalue.c). */
        if (memchr(core, 's', n) != NULL) {
            PyErr_SetString(PyExc_ValueError, "a plan's face keeps no string");
            return -1;
        }
        if ((self->plan = comp_plan_of(plan)) == NULL || !comp_plan_fits(self->plan, self))
            return -1;
        self->plan_obj = Py_NewRef(plan);
        if (comp_plan_needs_memory(self->plan) && memory != Py_None
            && !take_memory(self, memory))
            return -1;
        return 0;
    }
    if (wit_params == Py_None)
        return 0;
    if (!PyTuple_Check(wit_params) || PyTuple_GET_SIZE(wit_params) > MAX_CORE) {
        PyErr_SetString(PyExc_ValueError, "wit_params: a tuple of WIT scalars and strings");
        return -1;
    }
    /* The WIT types must flatten to the face's core signature exactly; a string parameter is
     * kept on the face (canonplan: wasmtime lowers it in the call). */
    char flat[MAX_CORE + 1];
    size_t k = 0;
    int strings = 0, kept = 0;  /* a string result (through memory), a string parameter */
    self->nwit = (int)PyTuple_GET_SIZE(wit_params);
    for (int i = 0; i < self->nwit && k < MAX_CORE; i++) {
        if (!wit_code(PyTuple_GET_ITEM(wit_params, i), &self->wit[i]))
            return -1;
        kept |= self->wit[i] == W_STRING;
        flat[k++] = self->wit[i] == W_STRING ? 's' : core_of(self->wit[i]);
    }
    if (k != n || memcmp(flat, core, n) != 0) {
        PyErr_SetString(PyExc_ValueError, "the WIT parameters do not flatten to the core ones "
                        "(a string parameter kept: 's')");
        return -1;
    }
    if (wit_result != Py_None) {
        if (!wit_code(wit_result, &self->wit_result))
            return -1;
        if (self->wit_result == W_STRING)
            strings = 1;  /* a return area's address */
        if ((self->wit_result == W_STRING ? 'i' : core_of(self->wit_result)) != self->result) {
            PyErr_SetString(PyExc_ValueError, "the WIT result does not flatten to its core type");
            return -1;
        }
    } else if (self->result) {
        PyErr_SetString(PyExc_ValueError, "a core result without a WIT result");
        return -1;
    }
    if (strings) {
        if (memory == Py_None)
            return 0;  /* no lane: a string result needs the memory */
        if (!take_memory(self, memory))
            return -1;
    }
    self->scalar = !strings && !kept;
    self->plain = 1;
    return 0;
}

static void
Face_dealloc(Face *self)
{
    Py_CLEAR(self->memory);
    Py_CLEAR(self->plan_obj);
    Py_CLEAR(self->clock_obj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Raise wasmtime's error (an owned wasmtime_error_t*) as the failed class. */
static PyObject *
raise_failed(void *error)
{
    PyObject *addr = PyLong_FromVoidPtr(error);
    if (addr != NULL) {
        PyErr_SetObject(failed_type, addr);
        Py_DECREF(addr);
    }
    return NULL;
}

static int
open_face(Face *self)
{
    if (self->ctx == NULL) {
        PyErr_SetString(PyExc_ValueError, "the instance is closed");
        return 0;
    }
    return 1;
}

/* Arm the deadline for `epoch` (see the top of the file); 0 with an exception if it is not
 * an int or None. */
int
arm(Face *self, PyObject *epoch)
{
    if (epoch == Py_None)
        return 1;
    long long e = PyLong_AsLongLong(epoch);
    if (e == -1 && PyErr_Occurred())
        return 0;
    if (e < 0)
        self->armed = -1;
    deadline_arm(set_deadline, self->ctx, self->clock, self->ticks, 0, &self->armed);
    return 1;
}

/* One of the instance's functions called (the face, its post-return face, its realloc face)
 * and then its own post-return, the GIL let go (the guest may run to its deadline, and host
 * functions take the GIL themselves); 0 with wasmtime's error raised as the failed class. */
static int
call_released(Face *self, const void *func, const cval *args, size_t nargs, cval *results,
              size_t nresults)
{
    void *error;
    void *ctx = self->ctx;
    Py_BEGIN_ALLOW_THREADS
    error = comp_call(func, ctx, args, nargs, results, nresults);
    if (error == NULL)
        error = comp_post(func, ctx);
    Py_END_ALLOW_THREADS
    if (error == NULL)
        return 1;
    raise_failed(error);
    return 0;
}

/* The face's call with its parameters, its result in `out`; 0 with the failed class raised. */
int
run_face(Face *self)
{
    return call_released(self, self->func, self->params, (size_t)self->nparams, &self->out,
                         self->result ? 1 : 0);
}

/* `out` (the call's answer, or NULL with an exception set) once the post-return face has run,
 * where there is one; NULL with its error raised as the failed class (`out` dropped) if it
 * failed. */
PyObject *
after_post(Face *self, PyObject *out)
{
    if (out == NULL || self->post == NULL
        || call_released(self, self->post, &self->out, self->result ? 1 : 0, NULL, 0))
        return out;
    Py_DECREF(out);
    return NULL;
}

/* A core value from Python: an int (its low bits) or a float. */
static int
set_core(cval *v, char core, PyObject *o)
{
    if (core == 's') {  /* a string the face keeps: its bytes, valid UTF-8 (or wasmtime aborts) */
        if (!PyBytes_CheckExact(o)) {
            PyErr_SetString(PyExc_TypeError, "a kept string's value is its UTF-8 bytes");
            return 0;
        }
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(o);
        const unsigned char *e = p + PyBytes_GET_SIZE(o);
        if (utf8_end(p, e) < e) {
            PyErr_SetString(PyExc_ValueError, "a kept string's bytes are not UTF-8");
            return 0;
        }
        v->of.string.size = (size_t)PyBytes_GET_SIZE(o);
        v->of.string.data = PyBytes_AS_STRING(o);
        return 1;
    }
    /* An int's low bits, as ctypes passes it; a float as it is (f32: rounded). */
    int real = core == 'f' || core == 'd';
    double d = real ? PyFloat_AsDouble(o) : 0.0;
    unsigned long long u = real ? 0 : PyLong_AsUnsignedLongLongMask(o);
    if ((d == -1.0 || u == (unsigned long long)-1) && PyErr_Occurred())
        return 0;
    set_payload(v, core, u, d);
    return 1;
}

static PyObject *
get_core(const cval *v, char core)
{
    switch (core) {
    case 'i': return PyLong_FromUnsignedLong(v->of.u32);
    case 'q': return PyLong_FromUnsignedLongLong(v->of.u64);
    case 'f': return PyFloat_FromDouble((double)v->of.f32);
    default: return PyFloat_FromDouble(v->of.f64);
    }
}

/* A float's JSON value (specs/components.md: non-finite ones as strings). */
PyObject *
json_float(double d)
{
    PyObject *s = NULL;
    if (isnan(d))
        s = str_nan;
    else if (isinf(d))
        s = d > 0 ? str_inf : str_minus_inf;
    if (s != NULL)
        return Py_NewRef(s);
    return PyFloat_FromDouble(d);
}

/* A JSON number (or "nan", "inf", "-inf") as a double. */
static int
json_double(PyObject *o, double *out)
{
    if (PyUnicode_Check(o)) {
        if (PyUnicode_Compare(o, str_nan) == 0)
            *out = NAN;
        else if (PyUnicode_Compare(o, str_inf) == 0)
            *out = INFINITY;
        else if (PyUnicode_Compare(o, str_minus_inf) == 0)
            *out = -INFINITY;
        else {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "not a float's JSON value");
            return 0;
        }
        return 1;
    }
    *out = PyFloat_AsDouble(o);
    return !(*out == -1.0 && PyErr_Occurred());
}

/* Lower a checked JSON value of WIT scalar `w` into `v` (canonabi.lowerer's flat values). */
static int
lower_scalar(cval *v, uint8_t w, PyObject *o)
{
    switch (w) {
    case W_BOOL: {
        int t = PyObject_IsTrue(o);
        if (t < 0)
            return 0;
        v->of.u32 = (uint32_t)t;
        return 1;
    }
    case W_CHAR:
        if (!PyUnicode_Check(o) || PyUnicode_GET_LENGTH(o) != 1) {
            PyErr_SetString(PyExc_TypeError, "a char is a one-character string");
            return 0;
        }
        v->of.u32 = (uint32_t)PyUnicode_READ_CHAR(o, 0);
        return 1;
    case W_F32:
    case W_F64: {
        double d;
        if (!json_double(o, &d))
            return 0;
        set_payload(v, core_of(w), 0, d);
        return 1;
    }
    default: {
        if (!PyLong_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "an integer's JSON value is an int");
            return 0;
        }
        unsigned long long u = PyLong_AsUnsignedLongLongMask(o);
        if (u == (unsigned long long)-1 && PyErr_Occurred())
            return 0;
        set_payload(v, core_of(w), u, 0.0);
        return 1;
    }
    }
}

/* Lift the JSON value of WIT scalar `w` from its core value (canonabi.lifter). */
static PyObject *
lift_scalar(const cval *v, uint8_t w)
{
    uint32_t i = v->of.u32;
    switch (w) {
    case W_BOOL: return PyBool_FromLong(i != 0);
    case W_S8: return PyLong_FromLong((int8_t)(uint8_t)i);
    case W_U8: return PyLong_FromLong((uint8_t)i);
    case W_S16: return PyLong_FromLong((int16_t)(uint16_t)i);
    case W_U16: return PyLong_FromLong((uint16_t)i);
    case W_S32: return PyLong_FromLong((int32_t)i);
    case W_U32: return PyLong_FromUnsignedLong(i);
    case W_S64: return PyLong_FromLongLong((long long)(int64_t)v->of.u64);
    case W_U64: return PyLong_FromUnsignedLongLong(v->of.u64);
    case W_F32: return json_float((double)v->of.f32);
    case W_F64: return json_float(v->of.f64);
    default:  /* W_CHAR */
        if (i >= 0x110000 || (i >= 0xD800 && i <= 0xDFFF)) {
            PyErr_Format(trap_type, "invalid char value: %#x", (unsigned)i);
            return NULL;
        }
        return PyUnicode_FromOrdinal((int)i);
    }
}

/* The face called with args[0], a list of one value per parameter (WIT scalars for call(),
 * core values for call_core()), its deadline armed for args[1]; 0 with an exception (TypeError
 * `what` for a list of another length) if a value is wrong or the call failed. */
static int
call_list(Face *self, PyObject *const *args, int wit, const char *what)
{
    PyObject *seq = args[0];
    if (!PyList_CheckExact(seq) || PyList_GET_SIZE(seq) != self->nparams) {
        PyErr_SetString(PyExc_TypeError, what);
        return 0;
    }
    for (int i = 0; i < self->nparams; i++) {
        PyObject *o = PyList_GET_ITEM(seq, i);
        if (wit ? !lower_scalar(&self->params[i], self->wit[i], o)
                : !set_core(&self->params[i], self->core[i], o))
            return 0;
    }
    return arm(self, args[1]) && run_face(self);
}

/* call(args, epoch) -> the JSON value of the result (None for none). */
static PyObject *
Face_call(Face *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes(nargs, 2, "call(args, epoch)") || !open_face(self))
        return NULL;
    if (!self->scalar) {
        PyErr_SetString(PyExc_TypeError, "call() is for scalar signatures: use call_core()");
        return NULL;
    }
    if (!call_list(self, args, 1, "args: a list, one value per parameter"))
        return NULL;
    return after_post(self, self->wit_result == W_NONE
                                ? Py_NewRef(Py_None) : lift_scalar(&self->out, self->wit_result));
}

/* --- the JSON lane: call_json() ----------------------------------------------------------
 * A scalar signature's call with its JSON bytes in and out: what runtime.py's
 * parse_arguments + call() + dumps do, for the inputs whose answer is plain. The parser
 * accepts only a JSON array of exactly one plain value per parameter, each of its type and in
 * its range (an integer without fraction or exponent, true/false, a finite number within the
 * type, a one-character string without escapes): on anything else it hands the call back
 * before running anything (NotImplemented), and the Python path gives its answer or its
 * refusal in its own words. So every input this lane takes gets the value Python would have
 * made of it (json.loads; values.py's checks), and the output is written as json.dumps or
 * orjson would write it (floats as repr() writes them). */

const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The end of a JSON number at p (NULL: not one); *integral: no fraction, no exponent. */
static const char *
number_end(const char *p, const char *end, int *integral)
{
    if (p < end && *p == '-')
        p++;
    if (p >= end || !is_digit(*p))
        return NULL;
    if (*p == '0')
        p++;
    else
        while (p < end && is_digit(*p))
            p++;
    *integral = 1;
    if (p < end && *p == '.') {
        *integral = 0;
        p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *integral = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit(*p))
            return NULL;
        while (p < end && is_digit(*p))
            p++;
    }
    return p;
}

/* Powers of ten a double holds exactly. */
static const double exact_pow10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                       1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                       1e20, 1e21, 1e22};

/* A JSON number (NUL-terminated, already checked by number_end) as a double without strtod,
 * when it has at most 15 significant digits and a decimal exponent within 22: both then are
 * exact doubles and one multiplication or division rounds correctly (Clinger's fast path),
 * so the answer is strtod's. 0: not such a number (strtod reads it). */
static int
fast_double(const char *s, double *out)
{
    int neg = *s == '-', digits = 0, frac = 0, e = 0;
    uint64_t m = 0;
    if (neg)
        s++;
    for (int in_frac = 0;; s++) {
        if (*s == '.' && !in_frac) {
            in_frac = 1;
            continue;
        }
        if ((unsigned)(*s - '0') >= 10)
            break;
        if (m != 0 || *s != '0')
            digits++;
        if (digits > 15)
            return 0;
        m = m * 10 + (uint64_t)(*s - '0');
        frac += in_frac;
    }
    if (*s == 'e' || *s == 'E') {
        int eneg = 0;
        s++;
        if (*s == '+' || *s == '-')
            eneg = *s++ == '-';
        for (; (unsigned)(*s - '0') < 10; s++)
            if ((e = e * 10 + (*s - '0')) > 400)
                return 0;
        if (eneg)
            e = -e;
    }
    if (*s != 0)
        return 0;
    int e10 = e - frac;
    if (e10 < -22 || e10 > 22)
        return 0;
    double d = (double)m;
    d = e10 < 0 ? d / exact_pow10[-e10] : d * exact_pow10[e10];
    *out = neg ? -d : d;
    return 1;
}

/* repr() of a finite double with 1e-4 <= |d| < 1e15 that has at most 15 significant digits,
 * without dtoa: the fewest decimals k whose rounding m of |d| * 10**k gives d back. Any
 * decimal of at most 15 significant digits is the only one of them that rounds to its
 * double (DBL_DIG), so that decimal is the shortest that does, which repr() writes (in fixed
 * notation in this range). 0: not such a double (dtoa writes it). */
static Py_ssize_t
short_float(double d, char *buf)
{
    double a = fabs(d);
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 0; k <= 15; k++) {
        double sc = a * exact_pow10[k];
        if (sc >= 1e15)
            return 0;
        double r = nearbyint(sc);
        if (r / exact_pow10[k] != a)
            continue;
        uint64_t mi = (uint64_t)r;
        if (k > 0 && mi % 10 == 0)
            return 0;  /* a shorter one was missed: not this path's to say */
        char digits[24];
        int n = 0;
        do {
            digits[n++] = (char)('0' + mi % 10);
            mi /= 10;
        } while (mi != 0 || n <= k);  /* at least one digit before the point */
        char *o = buf;
        if (d < 0)
            *o++ = '-';
        for (int i = n - 1; i >= k; i--)
            *o++ = digits[i];
        *o++ = '.';
        if (k == 0)
            *o++ = '0';
        for (int i = k - 1; i >= 0; i--)
            *o++ = digits[i];
        return o - buf;
    }
    return 0;
}

/* One plain JSON value of WIT scalar `w` at *pp into v; 0: not plain (hand the call back). */
int
parse_scalar(const char **pp, const char *end, uint8_t w, cval *v)
{
    const char *p = *pp;
    if (w == W_BOOL) {
        if (end - p >= 4 && memcmp(p, "true", 4) == 0) {
            v->of.u32 = 1;
            *pp = p + 4;
            return 1;
        }
        if (end - p >= 5 && memcmp(p, "false", 5) == 0) {
            v->of.u32 = 0;
            *pp = p + 5;
            return 1;
        }
        return 0;
    }
    if (w == W_CHAR) {
        /* '"', one UTF-8 encoded scalar value (no escape, no control character), '"' */
        if (p >= end || *p != '"')
            return 0;
        const unsigned char *q = (const unsigned char *)p + 1;
        const unsigned char *e = (const unsigned char *)end;
        if (q >= e)
            return 0;
        uint32_t c = q[0];
        int n;
        if (c < 0x80) {
            if (c < 0x20 || c == '"' || c == '\\')
                return 0;
            n = 1;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2;
            c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3;
            c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4;
            c &= 0x07;
        } else {
            return 0;
        }
        if (e - q < n + 1)
            return 0;
        for (int i = 1; i < n; i++) {
            if ((q[i] & 0xC0) != 0x80)
                return 0;
            c = (c << 6) | (q[i] & 0x3F);
        }
        /* overlong forms, surrogates and values past U+10FFFF: Python's way (refusal) */
        static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < least[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF) || q[n] != '"')
            return 0;
        v->of.u32 = c;
        *pp = (const char *)q + n + 1;
        return 1;
    }
    int integral;
    const char *e = number_end(p, end, &integral);
    if (e == NULL)
        return 0;
    if (w == W_F32 || w == W_F64) {
        char buf[64];
        size_t len = (size_t)(e - p);
        if (len >= sizeof buf)
            return 0;
        memcpy(buf, p, len);
        buf[len] = 0;
        double d;
        if (integral) {
            /* json.loads makes an int (float(-0) is 0.0, not -0.0) */
            const char *digits = buf[0] == '-' ? buf + 1 : buf;
            if (strspn(digits, "0") == strlen(digits)) {
                d = 0.0;
                goto have;
            }
        }
        if (fast_double(buf, &d))
            goto have;
        d = PyOS_string_to_double(buf, NULL, NULL);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    have:
        if (!isfinite(d) || (w == W_F32 && fabs(d) > 3.4028234663852886e38))
            return 0;
        set_payload(v, core_of(w), 0, d);
        *pp = e;
        return 1;
    }
    if (!integral)
        return 0;
    const char *q = p;
    int negative = *q == '-';
    if (negative)
        q++;
    if (e - q > 20)
        return 0;
    uint64_t u = 0;
    for (; q < e; q++) {
        uint64_t digit = (uint64_t)(*q - '0');
        if (u > (UINT64_MAX - digit) / 10)
            return 0;
        u = u * 10 + digit;
    }
    /* within the type's range, as values.py's check: [lo, hi] */
    static const uint64_t hi[] = {[W_S8] = 127, [W_U8] = 255, [W_S16] = 32767,
                                  [W_U16] = 65535, [W_S32] = 2147483647u,
                                  [W_U32] = 4294967295u, [W_S64] = INT64_MAX,
                                  [W_U64] = UINT64_MAX};
    int is_signed = w == W_S8 || w == W_S16 || w == W_S32 || w == W_S64;
    if (negative && u != 0) {
        if (!is_signed || u > hi[w] + 1)
            return 0;
        u = (uint64_t)0 - u;  /* two's complement: the core value's bits */
    } else if (u > hi[w]) {
        return 0;
    }
    set_payload(v, core_of(w), u, 0.0);
    *pp = e;
    return 1;
}

/* An integer's decimal digits into buf, as "%llu" / "%lld" write them (sprintf's format
 * parsing cost more than the rest of a u32's lift). */
static Py_ssize_t
udecimal(char *buf, uint64_t u)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (int k = 0; k < n; k++)
        buf[k] = tmp[n - 1 - k];
    return n;
}

static Py_ssize_t
decimal(char *buf, int64_t v)
{
    if (v >= 0)
        return udecimal(buf, (uint64_t)v);
    buf[0] = '-';
    return 1 + udecimal(buf + 1, (uint64_t)0 - (uint64_t)v);
}

/* JSON text of the result into buf (at least 64 bytes); its length, or -1 with an exception
 * (a char that is not a scalar value traps, as canonabi's lift does). */
Py_ssize_t
format_result(const cval *v, uint8_t w, char *buf)
{
    uint32_t i = v->of.u32;
    switch (w) {
    case W_NONE: memcpy(buf, "null", 4); return 4;
    case W_BOOL:
        if (i) {
            memcpy(buf, "true", 4);
            return 4;
        }
        memcpy(buf, "false", 5);
        return 5;
    case W_S8: return decimal(buf, (int64_t)(int8_t)(uint8_t)i);
    case W_U8: return udecimal(buf, (uint8_t)i);
    case W_S16: return decimal(buf, (int64_t)(int16_t)(uint16_t)i);
    case W_U16: return udecimal(buf, (uint16_t)i);
    case W_S32: return decimal(buf, (int64_t)(int32_t)i);
    case W_U32: return udecimal(buf, i);
    case W_S64: return decimal(buf, (int64_t)v->of.u64);
    case W_U64: return udecimal(buf, v->of.u64);
    case W_F32:
    case W_F64: {
        double d = w == W_F32 ? (double)v->of.f32 : v->of.f64;
        if (isnan(d)) {
            memcpy(buf, "\"nan\"", 5);
            return 5;
        }
        if (isinf(d)) {
            if (d > 0) {
                memcpy(buf, "\"inf\"", 5);
                return 5;
            }
            memcpy(buf, "\"-inf\"", 6);
            return 6;
        }
        Py_ssize_t short_n = short_float(d, buf);
        if (short_n > 0)
            return short_n;
        char *r = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);  /* repr() */
        if (r == NULL)
            return -1;
        size_t n = strlen(r);
        if (n > 60) {
            PyMem_Free(r);
            PyErr_SetString(PyExc_ValueError, "float text too long");
            return -1;
        }
        memcpy(buf, r, n);
        PyMem_Free(r);
        return (Py_ssize_t)n;
    }
    default: {  /* W_CHAR */
        if (i >= 0x110000 || (i >= 0xD800 && i <= 0xDFFF)) {
            PyErr_Format(trap_type, "invalid char value: %#x", (unsigned)i);
            return -1;
        }
        Py_ssize_t n = 0;
        buf[n++] = '"';
        static const char short_escape[] = {['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n',
                                            ['\f'] = 'f', ['\r'] = 'r'};
        if (i == '"' || i == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)i;
        } else if (i < 0x20) {
            buf[n++] = '\\';
            if (short_escape[i])
                buf[n++] = short_escape[i];
            else
                n += sprintf(buf + n, "u%04x", (unsigned)i);
        } else if (i < 0x80) {
            buf[n++] = (char)i;
        } else if (i < 0x800) {
            buf[n++] = (char)(0xC0 | (i >> 6));
            buf[n++] = (char)(0x80 | (i & 0x3F));
        } else if (i < 0x10000) {
            buf[n++] = (char)(0xE0 | (i >> 12));
            buf[n++] = (char)(0x80 | ((i >> 6) & 0x3F));
            buf[n++] = (char)(0x80 | (i & 0x3F));
        } else {
            buf[n++] = (char)(0xF0 | (i >> 18));
            buf[n++] = (char)(0x80 | ((i >> 12) & 0x3F));
            buf[n++] = (char)(0x80 | ((i >> 6) & 0x3F));
            buf[n++] = (char)(0x80 | (i & 0x3F));
        }
        buf[n++] = '"';
        return n;
    }
    }
}

/* Word-at-a-time scans of string bytes (eight at once): text is mostly plain ASCII, and a
 * byte-by-byte loop over a 1 KiB string cost more than the guest call itself. Each test is
 * exact for the word (no false answers), so a flagged word is redone byte by byte. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t
load_word(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Whether a byte of w is below 0x20, '"' or '\\' (a JSON string writes those escaped). */
static inline int
word_escapes(uint64_t w)
{
    uint64_t quote = w ^ (ONES * '"'), slash = w ^ (ONES * '\\');
    return (((w - ONES * 0x20) & ~w) | ((quote - ONES) & ~quote)
            | ((slash - ONES) & ~slash)) & HIGHS ? 1 : 0;
}

/* Whether one of the eight bytes at p needs an escape in a JSON string (word_escapes). */
int
word_escapes_at(const unsigned char *p)
{
    return word_escapes(load_word(p));
}

/* The first byte at or after p (before e) that is not ASCII. */
const unsigned char *
skip_ascii(const unsigned char *p, const unsigned char *e)
{
    while (e - p >= 8 && !(load_word(p) & HIGHS))
        p += 8;
    while (p < e && *p < 0x80)
        p++;
    return p;
}

/* The first byte at or after p (before e) that is not plain ASCII text in a JSON string
 * (past 0x7F, below 0x20, '"' or '\\'): sixteen bytes a step where SSE2 is (x86-64 always
 * has it), then eight. */
const unsigned char *
skip_plain(const unsigned char *p, const unsigned char *e)
{
#ifdef __SSE2__
    const __m128i below = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'),
        slash = _mm_set1_epi8('\\');
    for (; e - p >= 16; p += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* signed: a byte past 0x7F is negative, so below 0x20 too */
        __m128i bad = _mm_or_si128(_mm_cmplt_epi8(v, below),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                                _mm_cmpeq_epi8(v, slash)));
        int m = _mm_movemask_epi8(bad);
        if (m != 0)
            return p + __builtin_ctz((unsigned)m);
    }
#endif
    for (; e - p >= 8; p += 8) {
        uint64_t w = load_word(p);
        if ((w & HIGHS) || word_escapes(w))
            break;
    }
    while (p < e && *p < 0x80 && *p >= 0x20 && *p != '"' && *p != '\\')
        p++;
    return p;
}

/* The length of the valid UTF-8 sequence at s (1-4), 0 if there is none (overlong forms,
 * surrogates and values past U+10FFFF are not valid: Python's strict decoder). */
int
utf8_char(const unsigned char *s, const unsigned char *end)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || end - s < n)
        return 0;
    uint32_t v = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < least[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    return n;
}

/* A plain JSON string at *pp: '"', valid UTF-8 without escapes or control characters, '"';
 * its bytes in (*s, *n). 0: not plain. */
int
parse_string(const char **pp, const char *end, const char **s, Py_ssize_t *n)
{
    const unsigned char *p = (const unsigned char *)*pp;
    const unsigned char *e = (const unsigned char *)end;
    if (p >= e || *p != '"')
        return 0;
    const unsigned char *start = ++p;
    while ((p = skip_plain(p, e)) < e && *p != '"') {
        if (*p < 0x20 || *p == '\\')
            return 0;
        int k = utf8_char(p, e);
        if (k == 0)
            return 0;
        p += k;
    }
    if (p >= e)
        return 0;
    *s = (const char *)start;
    *n = (Py_ssize_t)(p - start);
    *pp = (const char *)p + 1;
    return 1;
}

/* The memory's size now (it grows during a call); 0 with an exception. */
int
memory_size_now(Face *self, uint64_t *out)
{
    PyObject *o = PyObject_GetAttr(self->memory, str_size);
    if (o == NULL)
        return 0;
    *out = PyLong_AsUnsignedLongLong(o);
    Py_DECREF(o);
    return !PyErr_Occurred();
}

/* realloc(0, 0, align, size) through the guest, the GIL released while it runs (under the
 * call's armed deadline); its answer in *ptr, unchecked: each caller checks what its lowering
 * needs (canonabi.Cx.realloc's alignment and bounds). 0 with an exception. */
int
guest_realloc(Face *self, uint32_t align, uint32_t size, uint32_t *ptr)
{
    if (self->realloc == NULL) {  /* canonplan gives every face that lowers into memory one */
        PyErr_SetString(PyExc_ValueError, "this face has no realloc");
        return 0;
    }
    self->grow[2].of.u32 = align;
    self->grow[3].of.u32 = size;
    if (!call_released(self, self->realloc, self->grow, 4, &self->at, 1))
        return 0;
    *ptr = self->at.of.u32;
    return 1;
}

PyObject *
canon_trap(const char *text)
{
    PyErr_SetString(trap_type, text);
    return NULL;
}

/* Where the UTF-8 of [p, e) stops being valid: e where all of it is. */
const unsigned char *
utf8_end(const unsigned char *p, const unsigned char *e)
{
    int k;
    while ((p = skip_ascii(p, e)) < e && (k = utf8_char(p, e)) != 0)
        p += k;
    return p;
}

/* A guest's string of n bytes at s that is not UTF-8: NULL with the trap raised in wasmtime's
 * words (canonabi._text's). */
PyObject *
utf8_trap(const uint8_t *s, size_t n)
{
    PyObject *raw = PyBytes_FromStringAndSize((const char *)s, (Py_ssize_t)n);
    if (raw != NULL) {
        PyObject *r = PyObject_CallOneArg(text_fn, raw);
        Py_DECREF(raw);
        Py_XDECREF(r);
        if (r != NULL && !PyErr_Occurred())
            PyErr_SetString(trap_type, "invalid utf-8");
    }
    return NULL;
}

/* The JSON string of the guest's n bytes at s, of which the first `plain` are ASCII with nothing
 * to escape (skip_plain), written at o: room for n + 2 bytes where all are plain, 6 n + 2
 * otherwise; its end, or NULL with canonabi._text's trap in wasmtime's words where the bytes
 * are not UTF-8. Written as json.dumps(ensure_ascii=False) and orjson write it: '"' and '\\'
 * escaped, control characters as \b \t \n \f \r or \u00XX, the rest as is. The one JSON
 * string writer of the C faces (the scalar lane's string result, a plan's strings). */
char *
json_text(char *o, const uint8_t *s, size_t n, size_t plain)
{
    if (plain < n && utf8_end(s + plain, s + n) < s + n) {
        utf8_trap(s, n);
        return NULL;
    }
    static const char short_escape[32] = {['\b'] = 'b', ['\t'] = 't', ['\n'] = 'n',
                                          ['\f'] = 'f', ['\r'] = 'r'};
    static const char hex[] = "0123456789abcdef";
    *o++ = '"';
    memcpy(o, s, plain);  /* most text: all of it */
    o += plain;
    size_t i = plain;
    while (i < n) {
        if (n - i >= 8 && !word_escapes_at(s + i)) {
            memcpy(o, s + i, 8);
            o += 8;
            i += 8;
            continue;
        }
        uint8_t ch = s[i++];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            *o++ = (char)ch;
        } else if (ch == '"' || ch == '\\') {
            *o++ = '\\';
            *o++ = (char)ch;
        } else if (short_escape[ch]) {
            *o++ = '\\';
            *o++ = short_escape[ch];
        } else {
            memcpy(o, "\\u00", 4);
            o[4] = hex[ch >> 4];
            o[5] = hex[ch & 15];
            o += 6;
        }
    }
    *o++ = '"';
    return o;
}

/* A string the guest returned through its return area at `area` (canonabi's checks and
 * words: alignment, bounds, UTF-8), as JSON. */
static PyObject *
lift_string(Face *self, uint32_t area)
{
    if (area % 4)
        return canon_trap("return pointer not aligned");
    uint64_t size;
    if (!memory_size_now(self, &size))
        return NULL;
    if ((uint64_t)area + 8 > size)
        return canon_trap("return pointer out of bounds of memory");
    uint32_t pair[2];
    memcpy(pair, self->base + area, 8);
    if ((uint64_t)pair[0] + pair[1] > size)
        return canon_trap("string pointer/length out of bounds of memory");
    const uint8_t *s = self->base + pair[0];
    size_t n = pair[1], plain = (size_t)(skip_plain(s, s + n) - s);
    Py_ssize_t room = (Py_ssize_t)(plain == n ? n + 2 : n * 6 + 2);
    PyObject *out = PyBytes_FromStringAndSize(NULL, room);
    if (out == NULL)
        return NULL;
    char *end = json_text(PyBytes_AS_STRING(out), s, n, plain);
    Py_ssize_t len = end == NULL ? 0 : end - PyBytes_AS_STRING(out);
    if (end == NULL || (len < room && _PyBytes_Resize(&out, len) < 0)) {
        Py_XDECREF(out);
        return NULL;
    }
    return out;
}

/* call_json(data, epoch) -> the result's JSON (bytes), or NotImplemented: `data` is not
 * plainly this signature's arguments and nothing ran (the Python path takes the call). */
static PyObject *
Face_call_json(Face *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes(nargs, 2, "call_json(data, epoch)"))
        return NULL;
    return face_call_json(self, args[0], args[1]);
}

PyObject *
face_call_json(Face *self, PyObject *data, PyObject *epoch)
{
    PyObject *args[2] = {data, epoch};
    if (!open_face(self))
        return NULL;
    if (self->plan != NULL && PyBytes_CheckExact(args[0]))
        return comp_call_plan(self, args[0], args[1]);
    if (!self->plain || !PyBytes_CheckExact(args[0]))
        Py_RETURN_NOTIMPLEMENTED;
    const char *p = PyBytes_AS_STRING(args[0]);
    const char *end = p + PyBytes_GET_SIZE(args[0]);
    p = skip_ws(p, end);
    if (p == end && self->nwit == 0)
        goto parsed;  /* empty input: no arguments */
    if (p == end || *p != '[')
        Py_RETURN_NOTIMPLEMENTED;
    p = skip_ws(p + 1, end);
    /* One core value per parameter (the face keeps its strings: canonplan). */
    for (int i = 0; i < self->nwit; i++) {
        if (i > 0) {
            if (p == end || *p != ',')
                Py_RETURN_NOTIMPLEMENTED;
            p = skip_ws(p + 1, end);
        }
        if (self->wit[i] == W_STRING) {
            /* Valid UTF-8 (parse_string), which wasmtime copies from the JSON bytes (they
             * outlive the call) and lowers within the call through the guest's realloc. */
            const char *s;
            Py_ssize_t n;
            if (!parse_string(&p, end, &s, &n))
                Py_RETURN_NOTIMPLEMENTED;
            self->params[i].of.string.size = (size_t)n;
            self->params[i].of.string.data = s;
        } else if (!parse_scalar(&p, end, self->wit[i], &self->params[i])) {
            Py_RETURN_NOTIMPLEMENTED;
        }
        p = skip_ws(p, end);
    }
    if (p == end || *p != ']')
        Py_RETURN_NOTIMPLEMENTED;
    p = skip_ws(p + 1, end);
    if (p != end)
        Py_RETURN_NOTIMPLEMENTED;
parsed:
    if (!arm(self, args[1]) || !run_face(self))
        return NULL;
    PyObject *out;
    if (self->wit_result == W_STRING) {
        out = lift_string(self, self->out.of.u32);
    } else {
        char buf[80];
        Py_ssize_t n = format_result(&self->out, self->wit_result, buf);
        out = n < 0 ? NULL : PyBytes_FromStringAndSize(buf, n);
    }
    return after_post(self, out);
}

/* call_core(values, epoch) -> the core result (int or float; None for none). The
 * post-return face waits for post_core(). */
static PyObject *
Face_call_core(Face *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes(nargs, 2, "call_core(values, epoch)") || !open_face(self))
        return NULL;
    if (!call_list(self, args, 0, "values: a list, one per core parameter"))
        return NULL;
    self->pending = self->post != NULL;
    if (!self->result)
        Py_RETURN_NONE;
    return get_core(&self->out, self->result);
}

/* post_core(): the post-return face with the last call_core()'s result (nothing without
 * one, or when it already ran). */
static PyObject *
Face_post_core(Face *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->pending)
        Py_RETURN_NONE;
    self->pending = 0;
    if (!open_face(self))
        return NULL;
    return after_post(self, Py_NewRef(Py_None));
}

/* alloc(align, size) -> int: realloc(0, 0, align, size) through the realloc face, unchecked
 * (canonabi.Cx.realloc checks the answer). */
static PyObject *
Face_alloc(Face *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!takes(nargs, 2, "alloc(align, size)") || !open_face(self))
        return NULL;
    unsigned long long a = PyLong_AsUnsignedLongLongMask(args[0]);
    unsigned long long n = PyLong_AsUnsignedLongLongMask(args[1]);
    uint32_t ptr;
    if (PyErr_Occurred() || !guest_realloc(self, (uint32_t)a, (uint32_t)n, &ptr))
        return NULL;
    return PyLong_FromUnsignedLong(ptr);
}

/* arm(epoch): arm the deadline as call() does, before a lowering that calls the guest's
 * realloc (which must run under this call's deadline, not the last one's). */
static PyObject *
Face_arm(Face *self, PyObject *epoch)
{
    if (!open_face(self) || !arm(self, epoch))
        return NULL;
    Py_RETURN_NONE;
}

/* close(): the store is being freed; later calls are refused instead of touching it. */
static PyObject *
Face_close(Face *self, PyObject *Py_UNUSED(ignored))
{
    self->ctx = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Face_methods[] = {
    {"call", (PyCFunction)(void (*)(void))Face_call, METH_FASTCALL,
     "call(args, epoch) -> the JSON value of a scalar signature's result"},
    {"call_json", (PyCFunction)(void (*)(void))Face_call_json, METH_FASTCALL,
     "call_json(data, epoch) -> the result's JSON, or NotImplemented (nothing ran)"},
    {"call_core", (PyCFunction)(void (*)(void))Face_call_core, METH_FASTCALL,
     "call_core(values, epoch) -> the core result; post_core() after reading it"},
    {"post_core", (PyCFunction)Face_post_core, METH_NOARGS,
     "the post-return face with the last call_core()'s result"},
    {"alloc", (PyCFunction)(void (*)(void))Face_alloc, METH_FASTCALL,
     "alloc(align, size) -> the guest realloc's answer, unchecked"},
    {"arm", (PyCFunction)Face_arm, METH_O, "arm(epoch): the deadline, as call() arms it"},
    {"close", (PyCFunction)Face_close, METH_NOARGS, "refuse further calls"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Face_members[] = {
    {"scalar", T_INT, offsetof(Face, scalar), READONLY, "whether call() serves this face"},
    {"armed", T_LONGLONG, offsetof(Face, armed), 0,
     "the moment (epoch + ticks owed) of the last deadline arm, -1"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject FaceType = {
    TYPE_HEAD("_compcall", Face, Py_TPFLAGS_DEFAULT,
              "One component export's flat face on one instance, with its C values."),
    .tp_init = (initproc)Face_init,
    .tp_methods = Face_methods,
    .tp_members = Face_members,
};

int
face_check(PyObject *o)
{
    return Py_IS_TYPE(o, &FaceType);
}


/* bind(func_call, post_return, set_epoch_deadline, kinds, failed, trap, text): the addresses
 * of wasmtime's C functions, the kinds (U32, U64, F32, F64, BOOL, STRING) of
 * wasmtime_component_val_t, the exception classes a failure and a canonical-ABI trap are
 * raised as, and the function that raises the trap for bytes that are not UTF-8 in
 * wasmtime's words (canonabi._text). */
static PyObject *
bind(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    void *p[3];
    if (!takes(nargs, 7, "bind(three addresses, kinds, failed, trap, text)")
        || !function_addresses(args, 3, p))
        return NULL;
    unsigned char k[6];
    if (!PyArg_ParseTuple(args[3], "bbbbbb", &k[0], &k[1], &k[2], &k[3], &k[4], &k[5]))
        return NULL;
    if (!PyType_Check(args[4]) || !PyType_Check(args[5])
        || !PyType_IsSubtype((PyTypeObject *)args[4], (PyTypeObject *)PyExc_Exception)
        || !PyType_IsSubtype((PyTypeObject *)args[5], (PyTypeObject *)PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "failed and trap: exception classes");
        return NULL;
    }
    comp_call = (comp_call_fn)p[0];
    comp_post = (comp_post_fn)p[1];
    set_deadline = (set_deadline_fn)p[2];
    kind_u32 = k[0];
    kind_u64 = k[1];
    kind_f32 = k[2];
    kind_f64 = k[3];
    kind_bool = k[4];
    kind_string = k[5];
    Py_XSETREF(failed_type, Py_NewRef(args[4]));
    Py_XSETREF(trap_type, Py_NewRef(args[5]));
    Py_XSETREF(text_fn, Py_NewRef(args[6]));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"bind", (PyCFunction)(void (*)(void))bind, METH_FASTCALL,
     "bind the wasmtime C functions, the value kinds and the failure classes"},
    {"plan", comp_plan_new, METH_O,
     "plan(desc) -> an export's lowering and lifting plan (flatcall.FlatCall.plan_desc)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_compcall",
    "The component call path in C (see sandbox/component/flatcall.py for the contract).", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__compcall(void)
{
    static PyTypeObject *const types[] = {&FaceType, &HostCallType, &LaneType, NULL};
    if (!lane_strings() || (str_nan = PyUnicode_InternFromString("nan")) == NULL
        || (str_inf = PyUnicode_InternFromString("inf")) == NULL
        || (str_minus_inf = PyUnicode_InternFromString("-inf")) == NULL
        || (str_size = PyUnicode_InternFromString("size")) == NULL)
        return NULL;
    PyObject *m = module_with_types(&module_def, types);
    if (m != NULL && (PyModule_AddIntConstant(m, "VAL_SIZE", sizeof(cval)) < 0
                      || PyModule_AddIntConstant(m, "VAL_OF", offsetof(cval, of)) < 0
                      || PyModule_AddIntConstant(m, "MAX_CORE", MAX_CORE) < 0
                      || PyModule_AddObject(m, "HOST_CALLBACK",
                                            PyLong_FromVoidPtr((void *)host_callback)) < 0))
        Py_CLEAR(m);
    return m;
}
