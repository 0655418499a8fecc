/*
 * omnicore JS runtime: QuickJS-ng behind the omnicore ABI v1 (specs/abi.md).
 *
 * This file is built once (by omnicore.toolchains.js) into build/js-runtime/omnicore-js.wasm.
 * A plugin build never compiles C: it copies that module, writes the plugin's JS into the
 * reserved region `omni_js_region` with an extra active data segment, renames the generic
 * handler exports omni_h<i> to the plugin's handler names, and turns the imports of
 * namespaces the plugin does not use into local stubs. So this file holds every host import
 * of §4, and must reach them only after checking the capability mask (a stub traps).
 *
 * Region layout (little-endian u32 words), written by the build:
 *   [0] magic "OMJS"  [1] flags: bits 0-15 capability mask (bit i = namespace i below),
 *   bit 31 the code is QuickJS bytecode (from omni_js_compile) instead of source
 *   [2] names_len  [3] code_len  then names ('\n'-separated handler names), the code, a NUL.
 *
 * Bytecode skips parsing in every new instance. QuickJS trusts the bytecode it reads; that is
 * fine here because a malformed blob can only corrupt this plugin's own linear memory, which
 * the wasm sandbox already treats as untrusted.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* getentropy: WASI random_get */

#include "quickjs.h"
#include "omnicore_api.h" /* generated from api.js: OMNI_API_JS, OMNI_API_JS_LEN */

#define IMPORT(mod, name) __attribute__((import_module(mod), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("omnicore:log", "write") void h_log_write(int32_t, const void *, int32_t);
IMPORT("omnicore:log", "enabled") int32_t h_log_enabled(int32_t);
IMPORT("omnicore:config", "get") int32_t h_config_get(const void *, int32_t, void *, int32_t);
IMPORT("omnicore:kv", "get") int32_t h_kv_get(const void *, int32_t, void *, int32_t);
IMPORT("omnicore:kv", "set") int32_t h_kv_set(const void *, int32_t, const void *, int32_t);
IMPORT("omnicore:kv", "delete") int32_t h_kv_delete(const void *, int32_t);
IMPORT("omnicore:kv", "incr") int32_t h_kv_incr(const void *, int32_t, int64_t, void *);
IMPORT("omnicore:kv", "list") int32_t h_kv_list(const void *, int32_t, void *, int32_t);
IMPORT("omnicore:memory", "remember") int64_t h_mem_remember(int32_t, const void *, int32_t);
IMPORT("omnicore:memory", "recall") int32_t h_mem_recall(const void *, int32_t, void *, int32_t);
IMPORT("omnicore:memory", "forget") int32_t h_mem_forget(int64_t);
IMPORT("omnicore:vectors", "upsert")
int32_t h_vec_upsert(const void *, int32_t, const void *, int32_t, const void *, int32_t,
                     const void *, int32_t);
IMPORT("omnicore:vectors", "search")
int64_t h_vec_search(const void *, int32_t, const void *, int32_t, int32_t);
IMPORT("omnicore:vectors", "delete")
int32_t h_vec_delete(const void *, int32_t, const void *, int32_t);
IMPORT("omnicore:vectors", "query")
int64_t h_vec_query(const void *, int32_t, const void *, int32_t, int32_t, const void *, int32_t);
IMPORT("omnicore:tasks", "enqueue")
int64_t h_tasks_enqueue(const void *, int32_t, const void *, int32_t, int64_t);
IMPORT("omnicore:tasks", "cancel") int32_t h_tasks_cancel(int64_t);
IMPORT("omnicore:http", "request") int64_t h_http_request(const void *, int32_t, const void *, int32_t);
IMPORT("omnicore:events", "publish")
int32_t h_events_publish(const void *, int32_t, const void *, int32_t);
IMPORT("omnicore:secrets", "get") int32_t h_secrets_get(const void *, int32_t, void *, int32_t);
IMPORT("omnicore:sql", "query") int64_t h_sql_query(const void *, int32_t, const void *, int32_t);
IMPORT("omnicore:sql", "execute")
int64_t h_sql_execute(const void *, int32_t, const void *, int32_t);
IMPORT("omnicore:sql", "begin") int64_t h_sql_begin(const void *, int32_t);
IMPORT("omnicore:sql", "commit") int32_t h_sql_commit(int64_t);
IMPORT("omnicore:sql", "rollback") int32_t h_sql_rollback(int64_t);
IMPORT("omnicore:redis", "command")
int64_t h_redis_command(const void *, int32_t, const void *, int32_t);
IMPORT("omnicore:mcp", "progress") int32_t h_mcp_progress(double, double, const void *, int32_t);
IMPORT("omnicore:mcp", "ask") int64_t h_mcp_ask(const void *, int32_t);

enum { CAP_LOG, CAP_CONFIG, CAP_KV, CAP_MEMORY, CAP_VECTORS, CAP_TASKS, CAP_HTTP, CAP_EVENTS,
       CAP_SECRETS, CAP_SQL, CAP_REDIS, CAP_MCP, CAP_COUNT };
static const char *const cap_names[CAP_COUNT] = {"log", "config", "kv", "memory", "vectors",
                                                 "tasks", "http", "events", "secrets", "sql",
                                                 "redis", "mcp"};

#ifndef OMNI_JS_REGION_BYTES
#define OMNI_JS_REGION_BYTES (4u << 20)
#endif
#define MAX_HANDLERS 64
#define FLAG_BYTECODE 0x80000000u

/* Not static: the compiler must not assume this zero-initialised region stays zero. */
__attribute__((aligned(16), used)) uint8_t omni_js_region[OMNI_JS_REGION_BYTES];

void omni_js_reseed(JSContext *ctx, uint64_t seed); /* quickjs_unit.c */

static JSRuntime *rt;
static JSContext *ctx;
static JSValue handlers[MAX_HANDLERS];
static int n_handlers;
static uint32_t cap_mask;
static char *init_error; /* set when the plugin failed to load; every call reports it */
static const uint8_t *cur_in;
static int32_t cur_len;
static uint8_t *out_buf;
static size_t out_cap;

EXPORT("omni_alloc") void *omni_alloc(int32_t len) { return malloc(len ? (size_t)len : 1); }
EXPORT("omni_free") void omni_free(void *ptr, int32_t len) { (void)len; free(ptr); }
EXPORT("omni_js_region_ptr") int32_t omni_js_region_ptr(void) { return (int32_t)(uintptr_t)omni_js_region; }
EXPORT("omni_js_region_cap") int32_t omni_js_region_cap(void) { return OMNI_JS_REGION_BYTES; }

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- results (§2.2): one growable output buffer, reused by every call (§2.3) ---- */

static int64_t pack(const void *p, size_t n, int err) {
    if (n > 0x7FFFFFFFu) n = 0x7FFFFFFFu;
    return (int64_t)((uint64_t)(uintptr_t)p << 32 | (err ? 0x80000000u : 0) | (uint32_t)n);
}

static int64_t result(const void *data, size_t n, int err) {
    if (n > out_cap) {
        size_t cap = out_cap ? out_cap : 256;
        while (cap < n) cap *= 2;
        uint8_t *grown = realloc(out_buf, cap);
        if (!grown) {
            static const char oom[] = "out of memory while returning the handler's output";
            return pack(oom, sizeof oom - 1, 1);
        }
        out_buf = grown;
        out_cap = cap;
    }
    if (n) memcpy(out_buf, data, n);
    return pack(out_buf, n, err);
}

static int64_t error_result(const char *msg) { return result(msg, strlen(msg), 1); }

/* "Name: message\nstack" for Error objects, JSON for other objects (`throw {code: "E"}`
   would print as "[object Object]"), String(value) for anything else thrown. */
static char *describe_exception(JSValue exc) {
    char *text = NULL;
    const char *s = NULL, *stack = NULL;
    if (JS_IsError(exc)) {
        JSValue st = JS_GetPropertyStr(ctx, exc, "stack");
        if (JS_IsString(st)) stack = JS_ToCString(ctx, st);
        JS_FreeValue(ctx, st);
    } else if (JS_IsObject(exc) && !JS_IsFunction(ctx, exc)) {
        JSValue json = JS_JSONStringify(ctx, exc, JS_UNDEFINED, JS_UNDEFINED);
        if (JS_IsString(json)) s = JS_ToCString(ctx, json);
        else if (JS_IsException(json)) JS_FreeValue(ctx, JS_GetException(ctx)); /* a cycle */
        JS_FreeValue(ctx, json);
    }
    if (!s) s = JS_ToCString(ctx, exc);
    if (!s) {
        JS_FreeValue(ctx, JS_GetException(ctx));
        s = NULL;
    }
    const char *head = s ? s : "exception (not convertible to a string)";
    size_t n = strlen(head) + (stack ? strlen(stack) + 1 : 0) + 1;
    text = malloc(n);
    if (text) {
        strcpy(text, head);
        if (stack && *stack) {
            strcat(text, "\n");
            strcat(text, stack);
        }
    }
    if (s) JS_FreeCString(ctx, s);
    if (stack) JS_FreeCString(ctx, stack);
    return text;
}

static int64_t exception_result(void) {
    JSValue exc = JS_GetException(ctx);
    char *text = describe_exception(exc);
    JS_FreeValue(ctx, exc);
    int64_t r = text ? error_result(text) : error_result("exception (out of memory)");
    free(text);
    return r;
}

/* Run queued jobs until `v` settles; async handlers complete here (no I/O event loop). */
static JSValue settle(JSValue v) {
    if (!JS_IsPromise(v)) return v;
    JSContext *job_ctx;
    for (;;) {
        JSPromiseStateEnum st = JS_PromiseState(ctx, v);
        if (st == JS_PROMISE_FULFILLED) {
            JSValue r = JS_PromiseResult(ctx, v);
            JS_FreeValue(ctx, v);
            return r;
        }
        if (st == JS_PROMISE_REJECTED) {
            JSValue r = JS_PromiseResult(ctx, v);
            JS_FreeValue(ctx, v);
            return JS_Throw(ctx, r);
        }
        int ran = JS_ExecutePendingJob(rt, &job_ctx);
        if (ran < 0) {
            JS_FreeValue(ctx, v);
            return JS_EXCEPTION;
        }
        if (ran == 0) {
            JS_FreeValue(ctx, v);
            return JS_ThrowInternalError(ctx, "the handler's promise never settled: omnicore "
                                              "runs jobs to completion and has no timers or I/O");
        }
    }
}

/* ---- the handler call ---- */

static int64_t encode_value(JSValue v) {
    size_t n;
    if (JS_IsUndefined(v) || JS_IsNull(v)) return result(NULL, 0, 0);
    if (JS_IsString(v)) {
        const char *s = JS_ToCStringLen(ctx, &n, v);
        if (!s) return exception_result();
        int64_t r = result(s, n, 0);
        JS_FreeCString(ctx, s);
        return r;
    }
    uint8_t *bytes = JS_GetUint8Array(ctx, &n, v);
    if (bytes) return result(bytes, n, 0);
    JS_FreeValue(ctx, JS_GetException(ctx));
    if (JS_IsArrayBuffer(v)) {
        bytes = JS_GetArrayBuffer(ctx, &n, v);
        if (bytes) return result(bytes, n, 0);
        JS_FreeValue(ctx, JS_GetException(ctx));
    }
    JSValue json = JS_JSONStringify(ctx, v, JS_UNDEFINED, JS_UNDEFINED);
    if (JS_IsException(json)) return exception_result();
    if (!JS_IsString(json)) {
        JS_FreeValue(ctx, json);
        return error_result("TypeError: the handler returned a value that is not JSON-serialisable "
                            "(return a string, a Uint8Array or a JSON value)");
    }
    int64_t r = encode_value(json);
    JS_FreeValue(ctx, json);
    return r;
}

static int64_t dispatch(int index, const uint8_t *ptr, int32_t len) {
    if (init_error) return error_result(init_error);
    if (index >= n_handlers) return error_result("no JS handler is bound to this export");
    cur_in = ptr;
    cur_len = len;
    JSValue arg = JS_NewStringLen(ctx, (const char *)ptr, (size_t)len);
    if (JS_IsException(arg)) return exception_result();
    JSValue ret = JS_Call(ctx, handlers[index], JS_UNDEFINED, 1, &arg);
    JS_FreeValue(ctx, arg);
    ret = settle(ret);
    cur_in = NULL;
    cur_len = 0;
    if (JS_IsException(ret)) return exception_result();
    int64_t r = encode_value(ret);
    JS_FreeValue(ctx, ret);
    return r;
}

#define H(i) EXPORT("omni_h" #i) int64_t omni_h##i(const uint8_t *p, int32_t n) { return dispatch(i, p, n); }
H(0) H(1) H(2) H(3) H(4) H(5) H(6) H(7) H(8) H(9)
H(10) H(11) H(12) H(13) H(14) H(15) H(16) H(17) H(18) H(19)
H(20) H(21) H(22) H(23) H(24) H(25) H(26) H(27) H(28) H(29)
H(30) H(31) H(32) H(33) H(34) H(35) H(36) H(37) H(38) H(39)
H(40) H(41) H(42) H(43) H(44) H(45) H(46) H(47) H(48) H(49)
H(50) H(51) H(52) H(53) H(54) H(55) H(56) H(57) H(58) H(59)
H(60) H(61) H(62) H(63)

/* ---- native functions behind the "omnicore" JS module (api.js) ---- */

typedef struct {
    const uint8_t *p;
    size_t n;
    const char *cstr; /* to free when the bytes came from a JS string */
} Bytes;

/* Strings are UTF-8 encoded; Uint8Array / ArrayBuffer are taken as is. */
static int get_bytes(Bytes *b, JSValueConst v) {
    b->cstr = NULL;
    if (JS_IsUndefined(v) || JS_IsNull(v)) {
        b->p = (const uint8_t *)"";
        b->n = 0;
        return 0;
    }
    if (JS_IsString(v)) {
        b->cstr = JS_ToCStringLen(ctx, &b->n, v);
        b->p = (const uint8_t *)b->cstr;
        return b->cstr ? 0 : -1;
    }
    b->p = JS_GetUint8Array(ctx, &b->n, v);
    if (b->p) return 0;
    JS_FreeValue(ctx, JS_GetException(ctx));
    if (JS_IsArrayBuffer(v)) {
        b->p = JS_GetArrayBuffer(ctx, &b->n, v);
        if (b->p) return 0;
    }
    JS_ThrowTypeError(ctx, "expected a string, Uint8Array or ArrayBuffer");
    return -1;
}

static void put_bytes(Bytes *b) {
    if (b->cstr) JS_FreeCString(ctx, b->cstr);
}

static int need(int cap) {
    if (cap_mask & (1u << cap)) return 0;
    JS_ThrowReferenceError(ctx,
        "omnicore:%s is not linked into this plugin: the build did not see it imported. "
        "Write `import { %s } from \"omnicore\"` in the plugin source and rebuild",
        cap_names[cap], cap_names[cap]);
    return -1;
}

typedef int32_t (*ReadFn)(const void *, int32_t, void *, int32_t);

/* §3.2: try a scratch buffer, call again with the exact size when the result did not fit.
 * Returns the status as a number when negative, else a string or Uint8Array. */
static JSValue read_call(ReadFn fn, JSValueConst key, int as_string) {
    Bytes k;
    uint8_t scratch[1024];
    if (get_bytes(&k, key)) return JS_EXCEPTION;
    int32_t n = fn(k.p, (int32_t)k.n, scratch, sizeof scratch);
    uint8_t *data = scratch;
    while (n > (int32_t)sizeof scratch && data == scratch) {
        data = malloc((size_t)n);
        if (!data) {
            put_bytes(&k);
            return JS_ThrowOutOfMemory(ctx);
        }
        int32_t m = fn(k.p, (int32_t)k.n, data, n);
        if (m > n) { /* the value grew in between: try once more with the new size */
            free(data);
            data = scratch;
        }
        n = m;
    }
    put_bytes(&k);
    JSValue r;
    if (n < 0) r = JS_NewInt32(ctx, n);
    else if (as_string) r = JS_NewStringLen(ctx, (const char *)data, (size_t)n);
    else r = JS_NewUint8ArrayCopy(ctx, data, (size_t)n);
    if (data != scratch) free(data);
    return r;
}

/* §3.3: a guest-owned block allocated by the host; E=1 blocks become thrown errors. */
static JSValue take_block(int64_t packed, int as_string) {
    uint64_t u = (uint64_t)packed;
    uint8_t *p = (uint8_t *)(uintptr_t)(uint32_t)(u >> 32);
    size_t n = (size_t)(u & 0x7FFFFFFFu);
    JSValue r;
    if (u & 0x80000000u) {
        r = JS_ThrowInternalError(ctx, "%.*s", (int)n, n ? (const char *)p : "host call failed");
    } else if (as_string) {
        r = JS_NewStringLen(ctx, n ? (const char *)p : "", n);
    } else {
        r = JS_NewUint8ArrayCopy(ctx, n ? p : (const uint8_t *)"", n);
    }
    if (p) free(p);
    return r;
}

static int64_t to_i64(JSValueConst v) {
    int64_t x = 0;
    if (JS_IsBigInt(v)) JS_ToBigInt64(ctx, &x, v);
    else {
        double d = 0;
        JS_ToFloat64(ctx, &d, v);
        x = (int64_t)d;
    }
    return x;
}

static JSValue from_i64(int64_t x) {
    if (x > 9007199254740991LL || x < -9007199254740991LL) return JS_NewBigInt64(ctx, x);
    return JS_NewInt64(ctx, x);
}

#define FN(name) static JSValue name(JSContext *c, JSValueConst this_val, int argc, JSValueConst *argv)
#define UNUSED (void)c; (void)this_val; (void)argc

FN(n_log_write) {
    UNUSED;
    int32_t level = 2;
    JS_ToInt32(ctx, &level, argv[0]);
    Bytes m;
    if (get_bytes(&m, argv[1])) return JS_EXCEPTION;
    h_log_write(level, m.p, (int32_t)m.n);
    put_bytes(&m);
    return JS_UNDEFINED;
}

FN(n_log_enabled) {
    UNUSED;
    int32_t level = 2;
    JS_ToInt32(ctx, &level, argv[0]);
    return JS_NewBool(ctx, h_log_enabled(level) != 0);
}

FN(n_config_get) {
    UNUSED;
    if (need(CAP_CONFIG)) return JS_EXCEPTION;
    return read_call(h_config_get, argv[0], 1);
}

FN(n_kv_get) {
    UNUSED;
    if (need(CAP_KV)) return JS_EXCEPTION;
    return read_call(h_kv_get, argv[0], 0);
}

FN(n_kv_set) {
    UNUSED;
    if (need(CAP_KV)) return JS_EXCEPTION;
    Bytes k, v;
    if (get_bytes(&k, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&v, argv[1])) {
        put_bytes(&k);
        return JS_EXCEPTION;
    }
    int32_t s = h_kv_set(k.p, (int32_t)k.n, v.p, (int32_t)v.n);
    put_bytes(&k);
    put_bytes(&v);
    return JS_NewInt32(ctx, s);
}

FN(n_kv_delete) {
    UNUSED;
    if (need(CAP_KV)) return JS_EXCEPTION;
    Bytes k;
    if (get_bytes(&k, argv[0])) return JS_EXCEPTION;
    int32_t s = h_kv_delete(k.p, (int32_t)k.n);
    put_bytes(&k);
    return JS_NewInt32(ctx, s);
}

/* Returns [status, value]. */
FN(n_kv_incr) {
    UNUSED;
    if (need(CAP_KV)) return JS_EXCEPTION;
    Bytes k;
    if (get_bytes(&k, argv[0])) return JS_EXCEPTION;
    int64_t out = 0;
    int32_t s = h_kv_incr(k.p, (int32_t)k.n, to_i64(argv[1]), &out);
    put_bytes(&k);
    JSValue arr = JS_NewArray(ctx);
    JS_SetPropertyUint32(ctx, arr, 0, JS_NewInt32(ctx, s));
    JS_SetPropertyUint32(ctx, arr, 1, from_i64(out));
    return arr;
}

FN(n_kv_list) {
    UNUSED;
    if (need(CAP_KV)) return JS_EXCEPTION;
    return read_call(h_kv_list, argv[0], 1);
}

FN(n_mem_remember) {
    UNUSED;
    if (need(CAP_MEMORY)) return JS_EXCEPTION;
    int32_t tier = 0;
    JS_ToInt32(ctx, &tier, argv[0]);
    Bytes item;
    if (get_bytes(&item, argv[1])) return JS_EXCEPTION;
    int64_t id = h_mem_remember(tier, item.p, (int32_t)item.n);
    put_bytes(&item);
    return from_i64(id);
}

FN(n_mem_recall) {
    UNUSED;
    if (need(CAP_MEMORY)) return JS_EXCEPTION;
    return read_call(h_mem_recall, argv[0], 1);
}

FN(n_mem_forget) {
    UNUSED;
    if (need(CAP_MEMORY)) return JS_EXCEPTION;
    return JS_NewInt32(ctx, h_mem_forget(to_i64(argv[0])));
}

FN(n_vec_upsert) {
    UNUSED;
    if (need(CAP_VECTORS)) return JS_EXCEPTION;
    Bytes coll, id, vec, meta;
    if (get_bytes(&coll, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&id, argv[1])) { put_bytes(&coll); return JS_EXCEPTION; }
    if (get_bytes(&vec, argv[2])) { put_bytes(&coll); put_bytes(&id); return JS_EXCEPTION; }
    if (get_bytes(&meta, argv[3])) {
        put_bytes(&coll); put_bytes(&id); put_bytes(&vec);
        return JS_EXCEPTION;
    }
    int32_t s = h_vec_upsert(coll.p, (int32_t)coll.n, id.p, (int32_t)id.n, vec.p,
                             (int32_t)(vec.n / 4), meta.p, (int32_t)meta.n);
    put_bytes(&coll); put_bytes(&id); put_bytes(&vec); put_bytes(&meta);
    return JS_NewInt32(ctx, s);
}

FN(n_vec_search) {
    UNUSED;
    if (need(CAP_VECTORS)) return JS_EXCEPTION;
    Bytes coll, vec;
    int32_t k = 10;
    if (get_bytes(&coll, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&vec, argv[1])) { put_bytes(&coll); return JS_EXCEPTION; }
    JS_ToInt32(ctx, &k, argv[2]);
    int64_t r = h_vec_search(coll.p, (int32_t)coll.n, vec.p, (int32_t)(vec.n / 4), k);
    put_bytes(&coll); put_bytes(&vec);
    return take_block(r, 1);
}

FN(n_vec_query) {
    UNUSED;
    if (need(CAP_VECTORS)) return JS_EXCEPTION;
    Bytes coll, vec, filter;
    int32_t k = 10;
    if (get_bytes(&coll, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&vec, argv[1])) { put_bytes(&coll); return JS_EXCEPTION; }
    if (get_bytes(&filter, argv[3])) { put_bytes(&coll); put_bytes(&vec); return JS_EXCEPTION; }
    JS_ToInt32(ctx, &k, argv[2]);
    int64_t r = h_vec_query(coll.p, (int32_t)coll.n, vec.p, (int32_t)(vec.n / 4), k, filter.p,
                            (int32_t)filter.n);
    put_bytes(&coll); put_bytes(&vec); put_bytes(&filter);
    return take_block(r, 1);
}

FN(n_vec_delete) {
    UNUSED;
    if (need(CAP_VECTORS)) return JS_EXCEPTION;
    Bytes coll, id;
    if (get_bytes(&coll, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&id, argv[1])) { put_bytes(&coll); return JS_EXCEPTION; }
    int32_t s = h_vec_delete(coll.p, (int32_t)coll.n, id.p, (int32_t)id.n);
    put_bytes(&coll); put_bytes(&id);
    return JS_NewInt32(ctx, s);
}

FN(n_tasks_enqueue) {
    UNUSED;
    if (need(CAP_TASKS)) return JS_EXCEPTION;
    Bytes h, payload;
    if (get_bytes(&h, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&payload, argv[1])) { put_bytes(&h); return JS_EXCEPTION; }
    int64_t id = h_tasks_enqueue(h.p, (int32_t)h.n, payload.p, (int32_t)payload.n, to_i64(argv[2]));
    put_bytes(&h); put_bytes(&payload);
    return from_i64(id);
}

FN(n_tasks_cancel) {
    UNUSED;
    if (need(CAP_TASKS)) return JS_EXCEPTION;
    return JS_NewInt32(ctx, h_tasks_cancel(to_i64(argv[0])));
}

FN(n_http_request) {
    UNUSED;
    if (need(CAP_HTTP)) return JS_EXCEPTION;
    Bytes req, body;
    if (get_bytes(&req, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&body, argv[1])) { put_bytes(&req); return JS_EXCEPTION; }
    int64_t r = h_http_request(req.p, (int32_t)req.n, body.p, (int32_t)body.n);
    put_bytes(&req); put_bytes(&body);
    return take_block(r, 0);
}

FN(n_events_publish) {
    UNUSED;
    if (need(CAP_EVENTS)) return JS_EXCEPTION;
    Bytes topic, payload;
    if (get_bytes(&topic, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&payload, argv[1])) { put_bytes(&topic); return JS_EXCEPTION; }
    int32_t s = h_events_publish(topic.p, (int32_t)topic.n, payload.p, (int32_t)payload.n);
    put_bytes(&topic); put_bytes(&payload);
    return JS_NewInt32(ctx, s);
}

FN(n_secrets_get) {
    UNUSED;
    if (need(CAP_SECRETS)) return JS_EXCEPTION;
    return read_call(h_secrets_get, argv[0], 0);
}

typedef int64_t (*ConnFn)(const void *, int32_t, const void *, int32_t);

/* (connector, request JSON) -> the §3.3 block as a string; an error block is thrown. */
static JSValue conn_call(JSContext *c, int cap, ConnFn fn, JSValueConst *argv) {
    (void)c;
    if (need(cap)) return JS_EXCEPTION;
    Bytes conn, req;
    if (get_bytes(&conn, argv[0])) return JS_EXCEPTION;
    if (get_bytes(&req, argv[1])) { put_bytes(&conn); return JS_EXCEPTION; }
    int64_t r = fn(conn.p, (int32_t)conn.n, req.p, (int32_t)req.n);
    put_bytes(&conn); put_bytes(&req);
    return take_block(r, 1);
}

FN(n_sql_query) { UNUSED; return conn_call(c, CAP_SQL, h_sql_query, argv); }
FN(n_sql_execute) { UNUSED; return conn_call(c, CAP_SQL, h_sql_execute, argv); }
FN(n_redis_command) { UNUSED; return conn_call(c, CAP_REDIS, h_redis_command, argv); }

FN(n_sql_begin) {
    UNUSED;
    if (need(CAP_SQL)) return JS_EXCEPTION;
    Bytes conn;
    if (get_bytes(&conn, argv[0])) return JS_EXCEPTION;
    int64_t r = h_sql_begin(conn.p, (int32_t)conn.n);
    put_bytes(&conn);
    return from_i64(r);
}

FN(n_sql_commit) {
    UNUSED;
    if (need(CAP_SQL)) return JS_EXCEPTION;
    return JS_NewInt32(ctx, h_sql_commit(to_i64(argv[0])));
}

FN(n_sql_rollback) {
    UNUSED;
    if (need(CAP_SQL)) return JS_EXCEPTION;
    return JS_NewInt32(ctx, h_sql_rollback(to_i64(argv[0])));
}

FN(n_input) {
    UNUSED;
    (void)argv;
    if (!cur_in) return JS_ThrowTypeError(ctx, "bytes() is only available during a handler call");
    return JS_NewUint8ArrayCopy(ctx, cur_in, (size_t)cur_len);
}

FN(n_utf8_encode) {
    UNUSED;
    size_t n;
    const char *s = JS_ToCStringLen(ctx, &n, argv[0]);
    if (!s) return JS_EXCEPTION;
    JSValue r = JS_NewUint8ArrayCopy(ctx, (const uint8_t *)s, n);
    JS_FreeCString(ctx, s);
    return r;
}

FN(n_utf8_decode) {
    UNUSED;
    Bytes b;
    if (get_bytes(&b, argv[0])) return JS_EXCEPTION;
    JSValue r = JS_NewStringLen(ctx, (const char *)b.p, b.n);
    put_bytes(&b);
    return r;
}

FN(n_mcp_progress) {
    UNUSED;
    if (need(CAP_MCP)) return JS_EXCEPTION;
    double done = 0, total = 0;
    if (JS_ToFloat64(ctx, &done, argv[0]) || JS_ToFloat64(ctx, &total, argv[1]))
        return JS_EXCEPTION;
    Bytes msg;
    if (get_bytes(&msg, argv[2])) return JS_EXCEPTION;
    int32_t s = h_mcp_progress(done, total, msg.p, (int32_t)msg.n);
    put_bytes(&msg);
    return JS_NewInt32(ctx, s);
}

FN(n_mcp_ask) {
    UNUSED;
    if (need(CAP_MCP)) return JS_EXCEPTION;
    Bytes req;
    if (get_bytes(&req, argv[0])) return JS_EXCEPTION;
    int64_t r = h_mcp_ask(req.p, (int32_t)req.n);
    put_bytes(&req);
    return take_block(r, 1);
}

FN(n_linked) {
    UNUSED;
    (void)argv;
    return JS_NewInt32(ctx, (int32_t)cap_mask);
}

static const JSCFunctionListEntry native_fns[] = {
    JS_CFUNC_DEF("logWrite", 2, n_log_write),
    JS_CFUNC_DEF("logEnabled", 1, n_log_enabled),
    JS_CFUNC_DEF("configGet", 1, n_config_get),
    JS_CFUNC_DEF("kvGet", 1, n_kv_get),
    JS_CFUNC_DEF("kvSet", 2, n_kv_set),
    JS_CFUNC_DEF("kvDelete", 1, n_kv_delete),
    JS_CFUNC_DEF("kvIncr", 2, n_kv_incr),
    JS_CFUNC_DEF("kvList", 1, n_kv_list),
    JS_CFUNC_DEF("memRemember", 2, n_mem_remember),
    JS_CFUNC_DEF("memRecall", 1, n_mem_recall),
    JS_CFUNC_DEF("memForget", 1, n_mem_forget),
    JS_CFUNC_DEF("vecUpsert", 4, n_vec_upsert),
    JS_CFUNC_DEF("vecSearch", 3, n_vec_search),
    JS_CFUNC_DEF("vecDelete", 2, n_vec_delete),
    JS_CFUNC_DEF("vecQuery", 4, n_vec_query),
    JS_CFUNC_DEF("tasksEnqueue", 3, n_tasks_enqueue),
    JS_CFUNC_DEF("tasksCancel", 1, n_tasks_cancel),
    JS_CFUNC_DEF("httpRequest", 2, n_http_request),
    JS_CFUNC_DEF("eventsPublish", 2, n_events_publish),
    JS_CFUNC_DEF("secretsGet", 1, n_secrets_get),
    JS_CFUNC_DEF("sqlQuery", 2, n_sql_query),
    JS_CFUNC_DEF("sqlExecute", 2, n_sql_execute),
    JS_CFUNC_DEF("sqlBegin", 1, n_sql_begin),
    JS_CFUNC_DEF("sqlCommit", 1, n_sql_commit),
    JS_CFUNC_DEF("sqlRollback", 1, n_sql_rollback),
    JS_CFUNC_DEF("redisCommand", 2, n_redis_command),
    JS_CFUNC_DEF("mcpProgress", 3, n_mcp_progress),
    JS_CFUNC_DEF("mcpAsk", 1, n_mcp_ask),
    JS_CFUNC_DEF("input", 0, n_input),
    JS_CFUNC_DEF("utf8Encode", 1, n_utf8_encode),
    JS_CFUNC_DEF("utf8Decode", 1, n_utf8_decode),
    JS_CFUNC_DEF("linked", 0, n_linked),
};

static int native_init(JSContext *c, JSModuleDef *m) {
    return JS_SetModuleExportList(c, m, native_fns, sizeof native_fns / sizeof native_fns[0]);
}

static JSModuleDef *load_module(JSContext *c, const char *name, void *opaque) {
    (void)opaque;
    if (strcmp(name, "omnicore:native") == 0) {
        JSModuleDef *m = JS_NewCModule(c, name, native_init);
        if (m) JS_AddModuleExportList(c, m, native_fns, sizeof native_fns / sizeof native_fns[0]);
        return m;
    }
    JS_ThrowReferenceError(c, "cannot import \"%s\": a plugin may import only \"omnicore\"; "
                              "bundle other modules into the plugin (omnicore build runs esbuild "
                              "when the project has a package.json)", name);
    return NULL;
}

static void fail_init(const char *prefix) {
    JSValue exc = JS_GetException(ctx);
    char *text = describe_exception(exc);
    JS_FreeValue(ctx, exc);
    size_t n = strlen(prefix) + (text ? strlen(text) : 0) + 1;
    init_error = malloc(n);
    if (init_error) {
        strcpy(init_error, prefix);
        if (text) strcat(init_error, text);
    }
    free(text);
}

/* Compile and run one module to completion (top-level await included). */
static JSValue run_module(const char *src, size_t len, const char *name) {
    JSValue fn = JS_Eval(ctx, src, len, name, JS_EVAL_TYPE_MODULE | JS_EVAL_FLAG_COMPILE_ONLY);
    if (JS_IsException(fn)) return fn;
    JSModuleDef *m = JS_VALUE_GET_PTR(fn);
    JSValue done = settle(JS_EvalFunction(ctx, fn));
    if (JS_IsException(done)) return done;
    JS_FreeValue(ctx, done);
    return JS_GetModuleNamespace(ctx, m);
}

static JSValue run_bytecode(const uint8_t *code, size_t len) {
    JSValue fn = JS_ReadObject(ctx, code, len, JS_READ_OBJ_BYTECODE);
    if (JS_IsException(fn)) return fn;
    if (!JS_IsModule(fn)) {
        JS_FreeValue(ctx, fn);
        return JS_ThrowTypeError(ctx, "corrupt plugin: the embedded bytecode is not a module");
    }
    JSModuleDef *m = JS_VALUE_GET_PTR(fn);
    if (JS_ResolveModule(ctx, fn) < 0) {
        JS_FreeValue(ctx, fn);
        return JS_EXCEPTION;
    }
    JSValue done = settle(JS_EvalFunction(ctx, fn));
    if (JS_IsException(done)) return done;
    JS_FreeValue(ctx, done);
    return JS_GetModuleNamespace(ctx, m);
}

static int bind_handlers(JSValue ns, const char *names, size_t names_len) {
    const char *p = names, *end = names + names_len;
    while (p < end && n_handlers < MAX_HANDLERS) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char name[256];
        if (n == 0 || n >= sizeof name) break;
        memcpy(name, p, n);
        name[n] = 0;
        JSValue f = JS_GetPropertyStr(ctx, ns, name);
        if (!JS_IsFunction(ctx, f)) {
            JS_FreeValue(ctx, f);
            JS_ThrowTypeError(ctx, "handler '%s' is not an exported function", name);
            return -1;
        }
        handlers[n_handlers++] = f;
        p += n + 1;
    }
    return 0;
}

static void reseed(void) {
    uint64_t seed = 0;
    if (ctx && getentropy(&seed, sizeof seed) == 0) omni_js_reseed(ctx, seed);
}

/* A snapshot build exports this as `_initialize`: the heap is already set up, only the
 * per-instance randomness is new. */
EXPORT("omni_js_resume") void omni_js_resume(void) { reseed(); }

__attribute__((constructor)) static void omni_js_init(void) {
    rt = JS_NewRuntime();
    ctx = rt ? JS_NewContext(rt) : NULL;
    if (!ctx) {
        init_error = "the JS runtime could not start (out of memory)";
        return;
    }
    /* Leave headroom below the 1 MiB wasm stack (-z stack-size) for native frames. */
    JS_SetMaxStackSize(rt, 160 * 1024);
    JS_SetModuleLoaderFunc(rt, NULL, load_module, NULL);
    reseed();
    JSValue api = run_module(OMNI_API_JS, OMNI_API_JS_LEN, "omnicore");
    if (JS_IsException(api)) {
        fail_init("the omnicore JS API failed to load: ");
        return;
    }
    JS_FreeValue(ctx, api);
    const uint8_t *region = omni_js_region;
    if (memcmp(region, "OMJS", 4) != 0) {
        init_error = "this is the bare omnicore JS runtime: build a plugin with `omnicore build`";
        return;
    }
    uint32_t flags = rd32(region + 4);
    cap_mask = (flags & 0xFFFFu) | 1u << CAP_LOG;
    uint32_t names_len = rd32(region + 8), src_len = rd32(region + 12);
    if (16ull + names_len + src_len + 1 > OMNI_JS_REGION_BYTES) {
        init_error = "corrupt plugin: the embedded source overruns its region";
        return;
    }
    const char *names = (const char *)region + 16;
    const char *src = names + names_len;
    JSValue ns = flags & FLAG_BYTECODE ? run_bytecode((const uint8_t *)src, src_len)
                                       : run_module(src, src_len, "plugin.js");
    if (JS_IsException(ns)) {
        fail_init("the plugin failed to load: ");
        return;
    }
    if (bind_handlers(ns, names, names_len)) fail_init("the plugin failed to load: ");
    JS_FreeValue(ctx, ns);
}

/* Build-time introspection: the plugin's exported function names as a JSON array, or its
 * load error (E=1). omnicore.toolchains.js calls this under wasmtime with stub imports. */
EXPORT("omni_js_exports") int64_t omni_js_exports(void) {
    if (init_error) return error_result(init_error);
    static const char script[] =
        "import * as ns from 'plugin.js';"
        "globalThis.__omni_exports = JSON.stringify(Object.keys(ns).filter("
        "k => typeof ns[k] === 'function'));";
    JSValue r = run_module(script, sizeof script - 1, "<exports>");
    if (JS_IsException(r)) return exception_result();
    JS_FreeValue(ctx, r);
    JSValue g = JS_GetGlobalObject(ctx);
    JSValue list = JS_GetPropertyStr(ctx, g, "__omni_exports");
    JS_FreeValue(ctx, g);
    int64_t out = encode_value(list);
    JS_FreeValue(ctx, list);
    return out;
}

/* Build-time: compile the module source at (src, len) (NUL-terminated) to bytecode without
 * running it. Called on an instance whose region is empty. */
EXPORT("omni_js_compile") int64_t omni_js_compile(const char *src, int32_t len) {
    if (!ctx) return error_result("the JS runtime did not start");
    JSValue fn = JS_Eval(ctx, src, (size_t)len, "plugin.js",
                         JS_EVAL_TYPE_MODULE | JS_EVAL_FLAG_COMPILE_ONLY);
    if (JS_IsException(fn)) return exception_result();
    size_t n = 0;
    uint8_t *code = JS_WriteObject(ctx, &n, fn, JS_WRITE_OBJ_BYTECODE | JS_WRITE_OBJ_STRIP_SOURCE);
    JS_FreeValue(ctx, fn);
    if (!code) return exception_result();
    int64_t r = result(code, n, 0);
    js_free(ctx, code);
    return r;
}
