/*
 * omnicore.h - write omnicore plugins in C (omnicore ABI v1, specs/abi.md).
 *
 * Header-only. Build a plugin as a WASI reactor:
 *
 *     clang --target=wasm32-wasi -mexec-model=reactor -Os -Wl,--strip-all -o p.wasm p.c
 *
 * A handler is declared with OMNI_HANDLER and returns an omni_result:
 *
 *     #include "omnicore.h"
 *     OMNI_HANDLER(echo, input) {
 *         if (input.len == 0) return omni_error("nothing to echo");   // host: GuestError
 *         omni_log(OMNI_LOG_INFO, "echoing");
 *         return omni_ok(input.ptr, input.len);
 *     }
 *
 * The header exports omni_alloc/omni_free (on malloc/free) and keeps each output alive until
 * the next call, as the ABI requires. The input buffer belongs to the host: read it during the
 * call, never free it, copy what you need to keep.
 *
 * Host capabilities: one group of functions per namespace (omni_log*, omni_config_*,
 * omni_kv_*, omni_memory_*, omni_vectors_*, omni_tasks_*, omni_http_*, omni_events_*,
 * omni_secrets_*, omni_sql_*, omni_redis_*). A plugin imports a namespace only if it calls into it; the operator must
 * grant every namespace but log. Functions returning data give an omni_data whose ptr is
 * malloc'd and NUL-terminated (free it with omni_data_free) and whose status is 0 or a
 * negative OMNI_* status.
 *
 * omni_json_* is a small, strict JSON *reader* (RFC 8259 grammar, nesting depth 64; it does
 * not check that strings are valid UTF-8): parse, look up object members, iterate arrays and
 * objects, decode strings and integers, all over the input text without building a tree.
 * omni_buf is a growable buffer with JSON string escaping for writing output.
 *
 * The header may be included from several .c files: its runtime symbols are weak.
 */
#ifndef OMNICORE_H
#define OMNICORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes (ABI §3.1) ------------------------------------------------------------ */

#define OMNI_OK 0
#define OMNI_NOT_FOUND (-1)
#define OMNI_DENIED (-2)
#define OMNI_INVALID (-3)
#define OMNI_QUOTA (-4)
#define OMNI_UNAVAILABLE (-5)
#define OMNI_TOO_LARGE (-6)
/* Not an ABI status: the guest could not allocate memory for a result. */
#define OMNI_NO_MEMORY (-100)

/* ---- types ------------------------------------------------------------------------------ */

/* Bytes borrowed for the duration of a call (the handler's input). */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} omni_bytes;

/* What a handler returns: build it with omni_ok*, omni_error. */
typedef struct {
    uint8_t *ptr;
    size_t len;
    int is_error; /* E bit: ptr/len hold a UTF-8 message */
    int owned;    /* ptr is malloc'd and freed at the start of the next call */
} omni_result;

/* Data a host function returned: malloc'd, NUL-terminated; status 0 or OMNI_* (< 0). When a
 * §3.3 call (http, vector search) fails, ptr holds the host's message. */
typedef struct {
    char *ptr;
    size_t len;
    int32_t status;
} omni_data;

static inline void omni_data_free(omni_data *d) {
    free(d->ptr);
    d->ptr = NULL;
    d->len = 0;
}

/* ---- host imports ----------------------------------------------------------------------- */

/* Imported under `omnicore test` too, where omnicore's test host serves them with the host's
 * own capability code and omnicore_test.h calls its omnicore:testing functions. */
#define OMNI__HOSTED(ns, fn) __attribute__((import_module(ns), import_name(fn)))
#ifdef OMNI_TESTING
/* `omnicore test`: omnicore_test.h hands the test's answer to the host just before the
 * request reaches it. */
void omni__test_answer_http(const char *req, size_t len);
void omni__test_answer_sql(const char *conn, const char *req, size_t len, int query);
#endif

OMNI__HOSTED("omnicore:log", "write") void omni__log_write(int32_t, const void *, size_t);
OMNI__HOSTED("omnicore:log", "enabled") int32_t omni__log_enabled(int32_t);
OMNI__HOSTED("omnicore:config", "get")
int32_t omni__config_get(const void *, size_t, void *, size_t);
OMNI__HOSTED("omnicore:kv", "get") int32_t omni__kv_get(const void *, size_t, void *, size_t);
OMNI__HOSTED("omnicore:kv", "set") int32_t omni__kv_set(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:kv", "delete") int32_t omni__kv_delete(const void *, size_t);
OMNI__HOSTED("omnicore:kv", "incr") int32_t omni__kv_incr(const void *, size_t, int64_t, int64_t *);
OMNI__HOSTED("omnicore:kv", "list") int32_t omni__kv_list(const void *, size_t, void *, size_t);
OMNI__HOSTED("omnicore:memory", "remember") int64_t omni__memory_remember(int32_t, const void *, size_t);
OMNI__HOSTED("omnicore:memory", "recall")
int32_t omni__memory_recall(const void *, size_t, void *, size_t);
OMNI__HOSTED("omnicore:memory", "forget") int32_t omni__memory_forget(int64_t);
OMNI__HOSTED("omnicore:vectors", "upsert")
int32_t omni__vectors_upsert(const void *, size_t, const void *, size_t, const float *, int32_t,
                             const void *, size_t);
OMNI__HOSTED("omnicore:vectors", "search")
int64_t omni__vectors_search(const void *, size_t, const float *, int32_t, int32_t);
OMNI__HOSTED("omnicore:vectors", "delete")
int32_t omni__vectors_delete(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:vectors", "query")
int64_t omni__vectors_query(const void *, size_t, const float *, int32_t, int32_t, const void *,
                            size_t);
OMNI__HOSTED("omnicore:tasks", "enqueue")
int64_t omni__tasks_enqueue(const void *, size_t, const void *, size_t, int64_t);
OMNI__HOSTED("omnicore:tasks", "cancel") int32_t omni__tasks_cancel(int64_t);
OMNI__HOSTED("omnicore:http", "request")
int64_t omni__http_request(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:events", "publish")
int32_t omni__events_publish(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:secrets", "get")
int32_t omni__secrets_get(const void *, size_t, void *, size_t);
OMNI__HOSTED("omnicore:sql", "query")
int64_t omni__sql_query(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:sql", "execute")
int64_t omni__sql_execute(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:sql", "begin") int64_t omni__sql_begin(const void *, size_t);
OMNI__HOSTED("omnicore:sql", "commit") int32_t omni__sql_commit(int64_t);
OMNI__HOSTED("omnicore:sql", "rollback") int32_t omni__sql_rollback(int64_t);
OMNI__HOSTED("omnicore:redis", "command")
int64_t omni__redis_command(const void *, size_t, const void *, size_t);

/* ---- runtime: allocator, output lifetime, handler glue (ABI §1.1, §2) ------------------- */

/* Weak so that several translation units may include the header. */
__attribute__((weak, export_name("omni_alloc"))) void *omni_alloc(size_t len) {
    /* malloc aligns to 16 on wasm32 (ABI needs 8); never return 0 for len 0. */
    return malloc(len ? len : 1);
}

__attribute__((weak, export_name("omni_free"))) void omni_free(void *ptr, size_t len) {
    (void)len;
    free(ptr);
}

/* The previous call's output, kept until the next call (ABI §2.3). */
__attribute__((weak)) void *omni__last_output = NULL;

static inline void omni__begin_call(void) {
    free(omni__last_output);
    omni__last_output = NULL;
}

static inline int64_t omni__finish(omni_result r) {
    if (r.owned) omni__last_output = r.ptr;
    if (r.len > 0x7FFFFFFFu) {
        static const char msg[] = "handler output exceeds 2 GiB";
        r.ptr = (uint8_t *)msg;
        r.len = sizeof msg - 1;
        r.is_error = 1;
    }
    return (int64_t)(((uint64_t)(uintptr_t)r.ptr << 32) | (r.is_error ? 0x80000000u : 0u) |
                     (uint64_t)r.len);
}

/* OMNI_HANDLER(name, input) { ... return omni_ok(...); } exports handler `name`; the body sees
 * `omni_bytes input`. */
#define OMNI_HANDLER(name, input)                                                            \
    static omni_result omni__handler_##name(omni_bytes input);                               \
    __attribute__((export_name(#name))) int64_t omni__export_##name(const uint8_t *ptr,      \
                                                                   size_t len) {             \
        omni__begin_call();                                                                  \
        omni_bytes in_ = {ptr, len};                                                         \
        return omni__finish(omni__handler_##name(in_));                                      \
    }                                                                                        \
    static omni_result omni__handler_##name(omni_bytes input)

/* ---- results ---------------------------------------------------------------------------- */

static inline omni_result omni__static_error(void) {
    static const char msg[] = "out of memory building the result";
    omni_result r = {(uint8_t *)msg, sizeof msg - 1, 1, 0};
    return r;
}

/* Success with a copy of `len` bytes at `data`. */
static inline omni_result omni_ok(const void *data, size_t len) {
    uint8_t *copy = (uint8_t *)malloc(len ? len : 1);
    if (!copy) return omni__static_error();
    if (len) memcpy(copy, data, len);
    omni_result r = {copy, len, 0, 1};
    return r;
}

/* Success with a copy of a NUL-terminated string. */
static inline omni_result omni_ok_str(const char *s) { return omni_ok(s, strlen(s)); }

/* Success taking ownership of malloc'd `ptr` (freed by the SDK at the next call). */
static inline omni_result omni_ok_owned(void *ptr, size_t len) {
    omni_result r = {(uint8_t *)ptr, len, 0, 1};
    return r;
}

/* Failure with a printf-formatted message; the host raises GuestError with it. */
__attribute__((format(printf, 1, 2))) static inline omni_result omni_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return omni__static_error();
    char *msg = (char *)malloc((size_t)n + 1);
    if (!msg) return omni__static_error();
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    va_end(ap);
    omni_result r = {(uint8_t *)msg, (size_t)n, 1, 1};
    return r;
}

/* ---- omnicore:log ----------------------------------------------------------------------- */

enum { OMNI_LOG_TRACE = 0, OMNI_LOG_DEBUG = 1, OMNI_LOG_INFO = 2, OMNI_LOG_WARN = 3,
       OMNI_LOG_ERROR = 4 };

static inline void omni_log_n(int level, const char *msg, size_t len) {
    omni__log_write(level, msg, len);
}
static inline void omni_log(int level, const char *msg) { omni__log_write(level, msg, strlen(msg)); }
/* Whether a message at `level` would be kept: skip costly formatting when not. */
static inline int omni_log_enabled(int level) { return omni__log_enabled(level) == 1; }

__attribute__((format(printf, 2, 3))) static inline void omni_logf(int level, const char *fmt, ...) {
    if (!omni_log_enabled(level)) return;
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        omni__log_write(level, small, (size_t)n);
        return;
    }
    char *big = (char *)malloc((size_t)n + 1);
    if (!big) {
        omni__log_write(level, small, sizeof small - 1); /* truncated beats nothing */
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    omni__log_write(level, big, (size_t)n);
    free(big);
}

/* Logs the message at error level, then traps: the host raises Trap and the log says why. */
__attribute__((noreturn, format(printf, 1, 2))) static inline void omni_panic(const char *fmt, ...) {
    char msg[512];
    int off = snprintf(msg, sizeof msg, "panic: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + off, sizeof msg - (size_t)off, fmt, ap);
    va_end(ap);
    omni__log_write(OMNI_LOG_ERROR, msg, strlen(msg));
    __builtin_trap();
}

/* ---- the caller-buffer pattern (ABI §3.2) and host blocks (ABI §3.3) --------------------- */

typedef int32_t (*omni__reader)(const void *, size_t, void *, size_t);

static inline omni_data omni__read(omni__reader fn, const void *arg, size_t arg_len) {
    omni_data d = {NULL, 0, OMNI_OK};
    size_t cap = 256;
    for (int attempt = 0; attempt < 4; attempt++) {
        char *buf = (char *)malloc(cap + 1);
        if (!buf) {
            d.status = OMNI_NO_MEMORY;
            return d;
        }
        int32_t n = fn(arg, arg_len, buf, cap);
        if (n < 0) {
            free(buf);
            d.status = n;
            return d;
        }
        if ((size_t)n <= cap) {
            buf[n] = '\0';
            d.ptr = buf;
            d.len = (size_t)n;
            return d;
        }
        free(buf); /* did not fit: nothing was written; retry with the size the host needs */
        cap = (size_t)n;
    }
    d.status = OMNI_UNAVAILABLE; /* the value kept changing size between reads */
    return d;
}

static inline int32_t omni__status_of_message(const char *msg, size_t len) {
    static const struct { const char *name; int32_t code; } names[] = {
        {"NOT_FOUND", OMNI_NOT_FOUND}, {"DENIED", OMNI_DENIED}, {"INVALID", OMNI_INVALID},
        {"QUOTA", OMNI_QUOTA}, {"UNAVAILABLE", OMNI_UNAVAILABLE}, {"TOO_LARGE", OMNI_TOO_LARGE}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t n = strlen(names[i].name);
        if (len > n && memcmp(msg, names[i].name, n) == 0 && msg[n] == ':') return names[i].code;
    }
    return OMNI_UNAVAILABLE;
}

/* Takes ownership of a block the host allocated with omni_alloc (i.e. malloc). */
static inline omni_data omni__block(int64_t packed) {
    omni_data d = {NULL, 0, OMNI_OK};
    uint64_t p = (uint64_t)packed;
    char *ptr = (char *)(uintptr_t)(p >> 32);
    size_t len = (size_t)(p & 0x7FFFFFFFu);
    char *grown = (char *)realloc(ptr, len + 1); /* room for the NUL; ptr came from malloc */
    if (!grown) {
        free(ptr);
        d.status = OMNI_NO_MEMORY;
        return d;
    }
    grown[len] = '\0';
    d.ptr = grown;
    d.len = len;
    if (p & 0x80000000u) d.status = omni__status_of_message(grown, len);
    return d;
}

/* ---- omnicore:config -------------------------------------------------------------------- */

/* The config value at `key` as text (strings verbatim, other values as JSON; "" = the whole
 * section). status OMNI_NOT_FOUND when absent. */
static inline omni_data omni_config_get(const char *key) {
    return omni__read(omni__config_get, key, strlen(key));
}

/* ---- omnicore:kv ------------------------------------------------------------------------ */

static inline omni_data omni_kv_get(const char *key) {
    return omni__read(omni__kv_get, key, strlen(key));
}
static inline int32_t omni_kv_set(const char *key, const void *value, size_t len) {
    return omni__kv_set(key, strlen(key), value, len);
}
/* 1 deleted, 0 absent, or a status. */
static inline int32_t omni_kv_delete(const char *key) { return omni__kv_delete(key, strlen(key)); }
/* Adds `delta` atomically; the new value in *out. 0 or a status. */
static inline int32_t omni_kv_incr(const char *key, int64_t delta, int64_t *out) {
    return omni__kv_incr(key, strlen(key), delta, out);
}
/* The keys with `prefix` as a JSON array of strings. */
static inline omni_data omni_kv_list(const char *prefix) {
    return omni__read(omni__kv_list, prefix, strlen(prefix));
}

/* ---- omnicore:memory -------------------------------------------------------------------- */

enum { OMNI_MEMORY_WORKING = 0, OMNI_MEMORY_SHORT_TERM = 1, OMNI_MEMORY_LONG_TERM = 2 };

/* `item_json` is {"text": str, "metadata": {...}?, "ttl_s": int?, "importance": 0..1?,
 * "vector": [f32...]?} (build it with omni_buf_json_string and omni_buf_json_floats); the id
 * (>= 1) or a status: OMNI_INVALID for a bad field, OMNI_TOO_LARGE for text or metadata over
 * the grant's limits. A tier at its cap evicts its least important memory. */
static inline int64_t omni_memory_remember(int tier, const char *item_json) {
    return omni__memory_remember(tier, item_json, strlen(item_json));
}
/* `query_json` is {"query": str, "tiers": [int]?, "limit": int?, "filter": {key: scalar}?,
 * "vector": [f32...]?}: `filter` keeps memories whose metadata equals every key, `vector`
 * ranks by cosine similarity too. A JSON array [{"id", "tier", "text", "metadata", "score",
 * "created_at"}], best first. */
static inline omni_data omni_memory_recall(const char *query_json) {
    return omni__read(omni__memory_recall, query_json, strlen(query_json));
}
/* 1 forgotten, 0 no such id. */
static inline int32_t omni_memory_forget(int64_t id) { return omni__memory_forget(id); }

/* ---- omnicore:vectors ------------------------------------------------------------------- */

/* `meta_json` is a JSON object or "". 0 or a status (OMNI_INVALID on a dimension mismatch). */
static inline int32_t omni_vectors_upsert(const char *coll, const char *id, const float *vec,
                                          int32_t dim, const char *meta_json) {
    return omni__vectors_upsert(coll, strlen(coll), id, strlen(id), vec, dim, meta_json,
                                strlen(meta_json));
}
/* The k nearest as a JSON array [{"id", "score", "metadata"}], best first. */
static inline omni_data omni_vectors_search(const char *coll, const float *vec, int32_t dim,
                                            int32_t k) {
    return omni__block(omni__vectors_search(coll, strlen(coll), vec, dim, k));
}
/* omni_vectors_search keeping only vectors whose metadata equals every key of `filter_json`,
 * a JSON object of scalars ({"lang":"en"}; "" filters nothing), applied before the k best are
 * taken. */
static inline omni_data omni_vectors_query(const char *coll, const float *vec, int32_t dim,
                                           int32_t k, const char *filter_json) {
    return omni__block(omni__vectors_query(coll, strlen(coll), vec, dim, k, filter_json,
                                           strlen(filter_json)));
}
/* 1 deleted, 0 absent, OMNI_NOT_FOUND no such collection. */
static inline int32_t omni_vectors_delete(const char *coll, const char *id) {
    return omni__vectors_delete(coll, strlen(coll), id, strlen(id));
}

/* ---- omnicore:tasks --------------------------------------------------------------------- */

/* Schedules this plugin's `handler` with `payload` after `delay_ms`; the task id or a status. */
static inline int64_t omni_tasks_enqueue(const char *handler, const void *payload, size_t len,
                                         int64_t delay_ms) {
    return omni__tasks_enqueue(handler, strlen(handler), payload, len, delay_ms);
}
/* 1 cancelled, 0 already running/finished, OMNI_NOT_FOUND unknown. */
static inline int32_t omni_tasks_cancel(int64_t id) { return omni__tasks_cancel(id); }

/* ---- omnicore:http ---------------------------------------------------------------------- */

typedef struct {
    int status;          /* HTTP status */
    const char *head;    /* JSON {"status", "headers"}; not NUL-terminated, head_len bytes */
    size_t head_len;
    const uint8_t *body; /* body bytes, body_len long; both point into the omni_data */
    size_t body_len;
} omni_http_response;

/* `req_json` is {"method", "url" | "connector"+"path", "headers"?, "timeout_ms"?}. Returns the
 * raw response block; parse it with omni_http_parse. A refused host is status OMNI_DENIED
 * with the host's message in ptr. */
static inline omni_data omni_http_request(const char *req_json, const void *body, size_t len) {
#ifdef OMNI_TESTING
    omni__test_answer_http(req_json, strlen(req_json));
#endif
    return omni__block(omni__http_request(req_json, strlen(req_json), body, len));
}

/* ---- omnicore:events, omnicore:secrets -------------------------------------------------- */

/* Publishes on `topic` (the host prefixes plugin.<name>.). 0 or a status. */
static inline int32_t omni_events_publish(const char *topic, const void *payload, size_t len) {
    return omni__events_publish(topic, strlen(topic), payload, len);
}
/* The secret's bytes; OMNI_DENIED if not exposed to this plugin, OMNI_NOT_FOUND if unset. */
static inline omni_data omni_secrets_get(const char *name) {
    return omni__read(omni__secrets_get, name, strlen(name));
}

/* ---- omni_buf: a growable output buffer ------------------------------------------------- */

typedef struct {
    char *ptr;
    size_t len, cap;
    int failed; /* an allocation failed; omni_buf_result then reports it */
} omni_buf;

static inline int omni_buf_reserve(omni_buf *b, size_t extra) {
    if (b->failed) return 0;
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = (char *)realloc(b->ptr, cap);
    if (!p) {
        b->failed = 1;
        return 0;
    }
    b->ptr = p;
    b->cap = cap;
    return 1;
}
static inline void omni_buf_append(omni_buf *b, const void *data, size_t len) {
    if (!omni_buf_reserve(b, len)) return;
    memcpy(b->ptr + b->len, data, len);
    b->len += len;
    b->ptr[b->len] = '\0';
}
static inline void omni_buf_puts(omni_buf *b, const char *s) { omni_buf_append(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static inline void omni_buf_printf(omni_buf *b,
                                                                         const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !omni_buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Appends `len` bytes of `s` as a quoted JSON string. */
static inline void omni_buf_json_string(omni_buf *b, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    omni_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') omni_buf_append(b, "\\\"", 2);
        else if (c == '\\') omni_buf_append(b, "\\\\", 2);
        else if (c == '\n') omni_buf_append(b, "\\n", 2);
        else if (c == '\r') omni_buf_append(b, "\\r", 2);
        else if (c == '\t') omni_buf_append(b, "\\t", 2);
        else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            omni_buf_append(b, esc, 6);
        } else omni_buf_append(b, &s[i], 1);
    }
    omni_buf_append(b, "\"", 1);
}

/* Appends `n` floats as a JSON array (for memory vectors). JSON has no NaN or infinity: with
 * one of those it appends nothing and returns OMNI_INVALID, else 0. */
static inline int omni_buf_json_floats(omni_buf *b, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!__builtin_isfinite(v[i])) return OMNI_INVALID;
    omni_buf_append(b, "[", 1);
    for (size_t i = 0; i < n; i++) /* %.9g: every float32 reads back exactly */
        omni_buf_printf(b, i ? ",%.9g" : "%.9g", (double)v[i]);
    omni_buf_append(b, "]", 1);
    return 0;
}

static inline void omni_buf_free(omni_buf *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

/* Success with the buffer's bytes (ownership moves to the SDK), or the allocation failure. */
static inline omni_result omni_buf_result(omni_buf *b) {
    if (b->failed) {
        omni_buf_free(b);
        return omni__static_error();
    }
    omni_result r = omni_ok_owned(b->ptr, b->len);
    b->ptr = NULL;
    b->len = b->cap = 0;
    return r;
}

/* ---- omnicore:sql (database connectors, ABI §4.10) --------------------------------------- */

/* `sql` is the statement: pass a string literal, never text built from input (PostgreSQL
 * placeholders are $1, $2, ...; MySQL/MariaDB's are ?). Every value goes in `params_json`, a
 * JSON array: null, true/false, numbers, strings (use omni_buf_json_string), or tagged
 * objects {"$bytes": "<base64>"}, {"$json": ...}, {"$timestamp": "..."}, {"$date": "..."},
 * {"$time": "..."}, {"$decimal": "12.50"}. NULL or "" is no parameters. `tx` is a handle
 * from omni_sql_begin, or 0 outside a transaction. */
static inline omni_data omni__sql_call(int execute, const char *conn, int64_t tx,
                                       const char *sql, const char *params_json) {
    omni_buf req = {0};
    omni_buf_puts(&req, "{\"sql\":");
    omni_buf_json_string(&req, sql, strlen(sql));
    omni_buf_puts(&req, ",\"params\":");
    omni_buf_puts(&req, params_json && *params_json ? params_json : "[]");
    if (tx > 0) omni_buf_printf(&req, ",\"tx\":%lld", (long long)tx);
    omni_buf_puts(&req, "}");
    if (req.failed) {
        omni_buf_free(&req);
        omni_data d = {NULL, 0, OMNI_NO_MEMORY};
        return d;
    }
#ifdef OMNI_TESTING
    omni__test_answer_sql(conn, req.ptr, req.len, !execute);
#endif
    int64_t r = execute ? omni__sql_execute(conn, strlen(conn), req.ptr, req.len)
                        : omni__sql_query(conn, strlen(conn), req.ptr, req.len);
    omni_buf_free(&req);
    return omni__block(r);
}
/* Rows as JSON {"columns": [{"name", "type"}], "rows": [[cell, ...], ...]} (cells use the
 * parameters' encoding). On failure status is OMNI_DENIED, OMNI_UNAVAILABLE, OMNI_INVALID
 * (the database's message), OMNI_TOO_LARGE or OMNI_QUOTA, with the host's message in ptr. */
static inline omni_data omni_sql_query(const char *conn, const char *sql, const char *params_json) {
    return omni__sql_call(0, conn, 0, sql, params_json);
}
/* JSON {"rows_affected": n, "last_insert_id": n?}. */
static inline omni_data omni_sql_execute(const char *conn, const char *sql,
                                         const char *params_json) {
    return omni__sql_call(1, conn, 0, sql, params_json);
}
static inline omni_data omni_sql_query_tx(const char *conn, int64_t tx, const char *sql,
                                          const char *params_json) {
    return omni__sql_call(0, conn, tx, sql, params_json);
}
static inline omni_data omni_sql_execute_tx(const char *conn, int64_t tx, const char *sql,
                                            const char *params_json) {
    return omni__sql_call(1, conn, tx, sql, params_json);
}
/* A transaction handle (>= 1) or a status. The host rolls back a transaction the call left
 * open; commit or roll back before returning. */
static inline int64_t omni_sql_begin(const char *conn) { return omni__sql_begin(conn, strlen(conn)); }
/* 0; OMNI_NOT_FOUND unknown handle; OMNI_UNAVAILABLE the commit failed (nothing committed). */
static inline int32_t omni_sql_commit(int64_t tx) { return omni__sql_commit(tx); }
static inline int32_t omni_sql_rollback(int64_t tx) { return omni__sql_rollback(tx); }

/* ---- omnicore:redis (ABI §4.11) --------------------------------------------------------- */

/* Runs `cmd` (GET, SET, INCR, EXPIRE, HSET, LPUSH, SADD, PUBLISH, ...: the list of §4.11)
 * with `args_json`, a JSON array of strings, integers or {"$bytes": "<base64>"} ("" or NULL:
 * none). Every key is under the plugin's prefix (the host adds it). The reply as JSON: null,
 * an integer, a string, an array or an object (HGETALL). A command outside the list is
 * OMNI_DENIED; Redis's own errors (WRONGTYPE) are OMNI_INVALID. */
static inline omni_data omni_redis_command(const char *conn, const char *cmd,
                                           const char *args_json) {
    omni_buf req = {0};
    omni_buf_puts(&req, "{\"cmd\":");
    omni_buf_json_string(&req, cmd, strlen(cmd));
    omni_buf_puts(&req, ",\"args\":");
    omni_buf_puts(&req, args_json && *args_json ? args_json : "[]");
    omni_buf_puts(&req, "}");
    if (req.failed) {
        omni_buf_free(&req);
        omni_data d = {NULL, 0, OMNI_NO_MEMORY};
        return d;
    }
    int64_t r = omni__redis_command(conn, strlen(conn), req.ptr, req.len);
    omni_buf_free(&req);
    return omni__block(r);
}
/* INCRBY `key` `delta`: the new value in *out; 0 or a status. */
static inline int32_t omni_redis_incrby(const char *conn, const char *key, int64_t delta,
                                        int64_t *out);

/* ---- omni_json: a strict reader --------------------------------------------------------- */

typedef enum {
    OMNI_JSON_INVALID = 0,
    OMNI_JSON_NULL,
    OMNI_JSON_BOOL,
    OMNI_JSON_NUMBER,
    OMNI_JSON_STRING,
    OMNI_JSON_ARRAY,
    OMNI_JSON_OBJECT
} omni_json_type;

/* A value: its type and the span of its JSON text (for a string, including the quotes). */
typedef struct {
    omni_json_type type;
    const char *ptr;
    size_t len;
} omni_json;

#define OMNI_JSON_MAX_DEPTH 64

static inline void omni__json_ws(const char *s, size_t n, size_t *i) {
    while (*i < n && (s[*i] == ' ' || s[*i] == '\t' || s[*i] == '\n' || s[*i] == '\r')) (*i)++;
}

static inline int omni__json_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static inline int omni__json_digits(const char *s, size_t n, size_t *i) {
    size_t from = *i;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') (*i)++;
    return *i > from;
}

/* Skips one value at s[*i]; 0 and *i at the problem when it is not valid JSON. */
static inline int omni__json_skip(const char *s, size_t n, size_t *i, int depth,
                                  omni_json_type *type) {
    if (*i >= n) return 0;
    char c = s[*i];
    if (c == '"') {
        (*i)++;
        while (*i < n && s[*i] != '"') {
            unsigned char ch = (unsigned char)s[*i];
            if (ch < 0x20) return 0;
            if (ch == '\\') {
                (*i)++;
                if (*i >= n) return 0;
                char e = s[*i];
                if (e == 'u') {
                    if (*i + 4 >= n || !omni__json_hex(s[*i + 1]) || !omni__json_hex(s[*i + 2]) ||
                        !omni__json_hex(s[*i + 3]) || !omni__json_hex(s[*i + 4]))
                        return 0;
                    *i += 4;
                } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                    return 0;
                }
            }
            (*i)++;
        }
        if (*i >= n) return 0;
        (*i)++;
        *type = OMNI_JSON_STRING;
        return 1;
    }
    if (c == '{' || c == '[') {
        if (depth >= OMNI_JSON_MAX_DEPTH) return 0;
        char close = c == '{' ? '}' : ']';
        (*i)++;
        omni__json_ws(s, n, i);
        if (*i < n && s[*i] == close) {
            (*i)++;
            *type = c == '{' ? OMNI_JSON_OBJECT : OMNI_JSON_ARRAY;
            return 1;
        }
        for (;;) {
            omni_json_type t;
            omni__json_ws(s, n, i);
            if (c == '{') {
                if (*i >= n || s[*i] != '"' || !omni__json_skip(s, n, i, depth + 1, &t)) return 0;
                omni__json_ws(s, n, i);
                if (*i >= n || s[*i] != ':') return 0;
                (*i)++;
                omni__json_ws(s, n, i);
            }
            if (!omni__json_skip(s, n, i, depth + 1, &t)) return 0;
            omni__json_ws(s, n, i);
            if (*i < n && s[*i] == ',') {
                (*i)++;
                continue;
            }
            if (*i < n && s[*i] == close) {
                (*i)++;
                *type = c == '{' ? OMNI_JSON_OBJECT : OMNI_JSON_ARRAY;
                return 1;
            }
            return 0;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        if (c == '-') (*i)++;
        if (*i < n && s[*i] == '0') (*i)++;
        else if (!omni__json_digits(s, n, i)) return 0;
        if (*i < n && s[*i] == '.') {
            (*i)++;
            if (!omni__json_digits(s, n, i)) return 0;
        }
        if (*i < n && (s[*i] == 'e' || s[*i] == 'E')) {
            (*i)++;
            if (*i < n && (s[*i] == '+' || s[*i] == '-')) (*i)++;
            if (!omni__json_digits(s, n, i)) return 0;
        }
        *type = OMNI_JSON_NUMBER;
        return 1;
    }
    static const struct { const char *lit; omni_json_type type; } lits[] = {
        {"true", OMNI_JSON_BOOL}, {"false", OMNI_JSON_BOOL}, {"null", OMNI_JSON_NULL}};
    for (size_t k = 0; k < 3; k++) {
        size_t len = strlen(lits[k].lit);
        if (n - *i >= len && memcmp(s + *i, lits[k].lit, len) == 0) {
            *i += len;
            *type = lits[k].type;
            return 1;
        }
    }
    return 0;
}

/* Parses a whole document. Returns 0 and fills *out, or -1 with *error_at = the byte offset of
 * the first problem (empty input and trailing characters are errors). */
static inline int omni_json_parse(const void *text, size_t len, omni_json *out,
                                  size_t *error_at) {
    const char *s = (const char *)text;
    size_t i = 0, start, end;
    omni_json_type type = OMNI_JSON_INVALID;
    omni__json_ws(s, len, &i);
    start = i;
    int ok = omni__json_skip(s, len, &i, 0, &type);
    end = i;
    if (ok) omni__json_ws(s, len, &i);
    if (!ok || i != len) {
        if (error_at) *error_at = i;
        out->type = OMNI_JSON_INVALID;
        out->ptr = NULL;
        out->len = 0;
        return -1;
    }
    out->type = type;
    out->ptr = s + start;
    out->len = end - start;
    return 0;
}

static inline int omni__utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

static inline uint32_t omni__hex4(const char *p) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v = v * 16 + (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return v;
}

/* Decodes a (parsed) string value into a malloc'd, NUL-terminated buffer; *len gets its
 * length (strings may contain NUL). NULL if v is not a string, on a lone surrogate, or when
 * out of memory. */
static inline char *omni_json_string(omni_json v, size_t *len) {
    if (v.type != OMNI_JSON_STRING || v.len < 2) return NULL;
    char *out = (char *)malloc(v.len); /* decoding never grows the text */
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 1; i + 1 < v.len; i++) {
        char c = v.ptr[i];
        if (c != '\\') { out[o++] = c; continue; }
        char e = v.ptr[++i];
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u': {
            uint32_t cp = omni__hex4(v.ptr + i + 1);
            i += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (i + 6 >= v.len || v.ptr[i + 1] != '\\' || v.ptr[i + 2] != 'u') goto bad;
                uint32_t lo = omni__hex4(v.ptr + i + 3);
                if (lo < 0xDC00 || lo >= 0xE000) goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                goto bad;
            }
            o += (size_t)omni__utf8_put(out + o, cp);
            break;
        }
        default: out[o++] = e; break; /* " \ / */
        }
    }
    out[o] = '\0';
    if (len) *len = o;
    return out;
bad:
    free(out);
    return NULL;
}

/* Walks the members of a (parsed) array or object:
 *
 *     omni_json_iter it = omni_json_iterate(doc);
 *     omni_json key, value;
 *     while (omni_json_next(&it, &key, &value)) { ... }
 *
 * For objects `key` is the member's name (a string value: decode it with omni_json_string);
 * for arrays its type is OMNI_JSON_INVALID. Anything else iterates over nothing. */
typedef struct {
    omni_json parent;
    size_t pos;
} omni_json_iter;

static inline omni_json_iter omni_json_iterate(omni_json v) {
    omni_json_iter it = {v, 1};
    if (v.type != OMNI_JSON_ARRAY && v.type != OMNI_JSON_OBJECT) it.pos = v.len;
    return it;
}

/* 1 and the next member in key and value, or 0 at the end. */
static inline int omni_json_next(omni_json_iter *it, omni_json *key, omni_json *value) {
    const char *s = it->parent.ptr;
    size_t n = it->parent.len, i = it->pos;
    omni__json_ws(s, n, &i);
    if (i < n && s[i] == ',') {
        i++;
        omni__json_ws(s, n, &i);
    }
    if (i + 1 >= n) { /* at the closing bracket */
        it->pos = n;
        return 0;
    }
    omni_json none = {OMNI_JSON_INVALID, NULL, 0};
    *key = none;
    if (it->parent.type == OMNI_JSON_OBJECT) {
        size_t ks = i;
        omni_json_type kt = OMNI_JSON_INVALID;
        omni__json_skip(s, n, &i, 0, &kt);
        key->type = OMNI_JSON_STRING;
        key->ptr = s + ks;
        key->len = i - ks;
        omni__json_ws(s, n, &i);
        i++; /* ':' */
        omni__json_ws(s, n, &i);
    }
    size_t vs = i;
    omni_json_type vt = OMNI_JSON_INVALID;
    omni__json_skip(s, n, &i, 0, &vt);
    value->type = vt;
    value->ptr = s + vs;
    value->len = i - vs;
    it->pos = i;
    return 1;
}

/* Looks up `key` in a (parsed) object: 1 found (*out set), 0 absent, -1 not an object. The
 * first of duplicate keys wins. */
static inline int omni_json_get(omni_json obj, const char *key, omni_json *out) {
    if (obj.type != OMNI_JSON_OBJECT) return -1;
    size_t key_len = strlen(key);
    omni_json_iter it = omni_json_iterate(obj);
    omni_json k, v;
    while (omni_json_next(&it, &k, &v)) {
        size_t dlen = 0;
        char *decoded = omni_json_string(k, &dlen);
        int match = decoded && dlen == key_len && memcmp(decoded, key, key_len) == 0;
        free(decoded);
        if (match) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* A (parsed) number that is an integer in int64 range: 0 and *out set, else -1. */
static inline int omni_json_int(omni_json v, int64_t *out) {
    if (v.type != OMNI_JSON_NUMBER) return -1;
    size_t i = 0;
    int neg = v.ptr[0] == '-';
    if (neg) i++;
    uint64_t acc = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < v.len; i++) {
        char c = v.ptr[i];
        if (c < '0' || c > '9') return -1; /* fraction or exponent: not an integer */
        uint64_t d = (uint64_t)(c - '0');
        if (acc > (limit - d) / 10) return -1;
        acc = acc * 10 + d;
    }
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return 0;
}

/* Parses the response block from omni_http_request: 0, or -1 if it is malformed. */
static inline int omni_http_parse(const omni_data *block, omni_http_response *resp) {
    if (block->status != OMNI_OK || block->len < 4) return -1;
    const uint8_t *b = (const uint8_t *)block->ptr;
    size_t head_len = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16 | (size_t)b[3] << 24;
    if (head_len > block->len - 4) return -1;
    omni_json head, status;
    int64_t code;
    if (omni_json_parse(b + 4, head_len, &head, NULL) != 0 ||
        omni_json_get(head, "status", &status) != 1 || omni_json_int(status, &code) != 0)
        return -1;
    resp->status = (int)code;
    resp->head = (const char *)b + 4;
    resp->head_len = head_len;
    resp->body = b + 4 + head_len;
    resp->body_len = block->len - 4 - head_len;
    return 0;
}

/* Defined after the JSON reader it uses. */
static inline int32_t omni_redis_incrby(const char *conn, const char *key, int64_t delta,
                                        int64_t *out) {
    omni_buf args = {0};
    omni_buf_puts(&args, "[");
    omni_buf_json_string(&args, key, strlen(key));
    omni_buf_printf(&args, ",%lld]", (long long)delta);
    omni_data d = args.failed ? (omni_data){NULL, 0, OMNI_NO_MEMORY}
                              : omni_redis_command(conn, "INCRBY", args.ptr);
    omni_buf_free(&args);
    int32_t status = d.status;
    omni_json v;
    if (status == OMNI_OK &&
        (omni_json_parse(d.ptr, d.len, &v, NULL) != 0 || omni_json_int(v, out) != 0))
        status = OMNI_INVALID;
    omni_data_free(&d);
    return status;
}

#ifdef __cplusplus
}
#endif

#endif /* OMNICORE_H */
