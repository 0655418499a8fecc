/*
 * omnicore_test.h - unit tests for C plugins, run by `omnicore test`.
 *
 * `omnicore test` compiles the plugin's top-level .c files with every .c file in its tests/
 * folder for wasm32-wasi as one program (clang, the same target as the build, with
 * -DOMNI_TESTING), and runs it on omnicore's test host (omnicore.toolchains.testhost): log,
 * config, kv, memory, tasks, events and secrets are the host's own capability code over
 * in-memory stores, every one granted, and the functions below set them up and read them
 * through its omnicore:testing imports. The capabilities that answer with a block the host
 * allocates in the guest are fakes in this file: sql answers what the test scripted, http
 * and vectors answer OMNI_UNAVAILABLE, and Redis goes to the runner's in-memory Redis
 * (omnicore.toolchains.testredis: the host's commands, replies and refusals, held to
 * sdk/contract/host.json). Every test starts from an empty host.
 *
 *     #include "omnicore_test.h"
 *
 *     OMNI_TEST(greets_by_name) {
 *         omni_test_config("greeting", "Hi");
 *         omni_test_result r = omni_test_call(greet, "{\"name\":\"Ada\"}");
 *         OMNI_EXPECT(!r.is_error);
 *         OMNI_EXPECT_STR(r.output, "{\"message\":\"Hi, Ada!\"}");
 *         OMNI_EXPECT_STR(omni_test_log_line(0), "greeting Ada");
 *     }
 *
 * A failed OMNI_EXPECT* prints file:line and what differed, then returns from the test (so
 * use them in the test's own body); the program's exit status is the number of failed tests
 * (at most 255). `omnicore test DIR -- NAME...` runs only the tests named.
 */
#ifndef OMNICORE_TEST_H
#define OMNICORE_TEST_H

#ifndef OMNI_TESTING
#error "omnicore_test.h is for `omnicore test`, which compiles with -DOMNI_TESTING"
#endif

#include "omnicore.h"

/* ---- tests and expectations ------------------------------------------------------------- */

typedef void (*omni__test_fn)(void);
typedef struct {
    const char *name;
    omni__test_fn fn;
} omni__test_entry;

#define OMNI__MAX_TESTS 1024
__attribute__((weak)) omni__test_entry omni__tests[OMNI__MAX_TESTS];
__attribute__((weak)) int omni__ntests = 0;
__attribute__((weak)) int omni__failed_now = 0;
__attribute__((weak)) const char *omni__running = "";

static inline void omni__test_register(const char *name, omni__test_fn fn) {
    if (omni__ntests < OMNI__MAX_TESTS) {
        omni__tests[omni__ntests].name = name;
        omni__tests[omni__ntests].fn = fn;
        omni__ntests++;
    }
}

/* OMNI_TEST(name) { ... } defines and registers a test. */
#define OMNI_TEST(name)                                                                       \
    static void omni__test_##name(void);                                                      \
    __attribute__((constructor)) static void omni__register_##name(void) {                    \
        omni__test_register(#name, omni__test_##name);                                        \
    }                                                                                         \
    static void omni__test_##name(void)

__attribute__((format(printf, 3, 4))) static inline void omni__test_fail(const char *file,
                                                                         int line,
                                                                         const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s\n    %s:%d: ", omni__running, file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    omni__failed_now = 1;
}

static inline int omni__streq(const char *a, const char *b) {
    return a && b && strcmp(a, b) == 0;
}

#define OMNI_EXPECT(cond)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            omni__test_fail(__FILE__, __LINE__, "expected %s", #cond);                        \
            return;                                                                           \
        }                                                                                     \
    } while (0)

#define OMNI_EXPECT_STR(actual, expected)                                                     \
    do {                                                                                      \
        const char *a_ = (actual), *e_ = (expected);                                          \
        if (!omni__streq(a_, e_)) {                                                           \
            omni__test_fail(__FILE__, __LINE__, "%s is \"%s\", expected \"%s\"", #actual,     \
                            a_ ? a_ : "(null)", e_ ? e_ : "(null)");                          \
            return;                                                                           \
        }                                                                                     \
    } while (0)

#define OMNI_EXPECT_INT(actual, expected)                                                     \
    do {                                                                                      \
        long long a_ = (long long)(actual), e_ = (long long)(expected);                       \
        if (a_ != e_) {                                                                       \
            omni__test_fail(__FILE__, __LINE__, "%s is %lld, expected %lld", #actual, a_, e_); \
            return;                                                                           \
        }                                                                                     \
    } while (0)

/* ---- calling handlers ------------------------------------------------------------------- */

/* A handler's answer: its output (or error message) NUL-terminated, valid until the next
 * call; is_error when it returned omni_error. */
typedef struct {
    const char *output;
    size_t len;
    int is_error;
} omni_test_result;

__attribute__((weak)) char *omni__test_output = NULL;

typedef int64_t (*omni__export_fn)(const uint8_t *, size_t);

static inline omni_test_result omni__test_call(omni__export_fn fn, const void *input,
                                               size_t len) {
    uint8_t *in = (uint8_t *)malloc(len ? len : 1); /* the host's buffer, as in a real call */
    if (len) memcpy(in, input, len);
    uint64_t packed = (uint64_t)fn(in, len);
    free(in);
    size_t out_len = (size_t)(packed & 0x7FFFFFFFu);
    const char *out = (const char *)(uintptr_t)(packed >> 32);
    free(omni__test_output);
    omni__test_output = (char *)malloc(out_len + 1);
    if (out_len) memcpy(omni__test_output, out, out_len);
    omni__test_output[out_len] = '\0';
    omni_test_result r = {omni__test_output, out_len, (packed & 0x80000000u) != 0};
    return r;
}

/* Calls handler `handler` (the name given to OMNI_HANDLER) with a string or bytes. */
#define omni_test_call(handler, input) omni_test_call_n(handler, input, strlen(input))
#define omni_test_call_n(handler, input, len)                                                 \
    omni__test_call(({                                                                        \
                        int64_t omni__export_##handler(const uint8_t *, size_t);              \
                        &omni__export_##handler;                                              \
                    }),                                                                       \
                    (input), (len))

/* ---- the fake host's state -------------------------------------------------------------- */

typedef struct {
    char *key;
    char *value;
    size_t len;
} omni__pair;

typedef struct {
    omni__pair *items;
    size_t n, cap;
} omni__pairs;

static inline char *omni__dup(const void *p, size_t n) {
    char *s = (char *)malloc(n + 1);
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static inline omni__pair *omni__find(omni__pairs *m, const void *key, size_t len) {
    for (size_t i = 0; i < m->n; i++)
        if (strlen(m->items[i].key) == len && memcmp(m->items[i].key, key, len) == 0)
            return &m->items[i];
    return NULL;
}

static inline void omni__put(omni__pairs *m, const void *key, size_t klen, const void *value,
                             size_t len) {
    omni__pair *p = omni__find(m, key, klen);
    if (!p) {
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 8;
            m->items = (omni__pair *)realloc(m->items, m->cap * sizeof *m->items);
        }
        p = &m->items[m->n++];
        p->key = omni__dup(key, klen);
        p->value = NULL;
    }
    free(p->value);
    p->value = omni__dup(value, len);
    p->len = len;
}

static inline int omni__remove(omni__pairs *m, const void *key, size_t len) {
    omni__pair *p = omni__find(m, key, len);
    if (!p) return 0;
    free(p->key);
    free(p->value);
    *p = m->items[--m->n];
    return 1;
}

static inline void omni__clear(omni__pairs *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->items[i].key);
        free(m->items[i].value);
    }
    m->n = 0;
}

/* Scripted SQL answers (statement, answer), SQL calls (connector, request JSON; "BEGIN n"/
 * "COMMIT n"/"ROLLBACK n" for transactions). */
typedef struct {
    omni__pairs sql_answers, sql_calls;
    int64_t next_tx;
    int64_t open_tx[64];
} omni__host_state;

__attribute__((weak)) omni__host_state omni__host = {0};

/* The runner's in-memory Redis (omnicore.toolchains.c): a command (its answer's length, bit 31
 * set for a refusal, then copied out by redis_reply: the runner never calls into the program,
 * whose constructors would run again), emptied, and what a test reads of it. */
OMNI__HOSTED("omnicore:testing", "redis_command") int64_t omni__redis_run(const void *, size_t);
OMNI__HOSTED("omnicore:testing", "redis_reply") void omni__redis_reply(void *);
OMNI__HOSTED("omnicore:testing", "redis_reset") void omni__redis_reset(void);
OMNI__HOSTED("omnicore:testing", "redis_get")
int32_t omni__redis_get(const void *, size_t, void *, size_t);
OMNI__HOSTED("omnicore:testing", "redis_ttl") int64_t omni__redis_ttl(const void *, size_t);
OMNI__HOSTED("omnicore:testing", "redis_set")
void omni__redis_set(const void *, size_t, const void *, size_t);

/* The test host (omnicore.toolchains.testhost.control): a fresh host, and what a test sets
 * and reads of it. A read answers the length and writes only when it fits (§3.2). */
OMNI__HOSTED("omnicore:testing", "reset") void omni__host_reset(void);
OMNI__HOSTED("omnicore:testing", "config_set")
void omni__host_config(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:testing", "set_log_level") void omni__host_log_level(int32_t);
OMNI__HOSTED("omnicore:testing", "set_secret")
void omni__host_secret(const void *, size_t, const void *, size_t, int32_t);
OMNI__HOSTED("omnicore:testing", "kv_set")
void omni__host_kv_set(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:testing", "kv_get")
int32_t omni__host_kv_get(const void *, size_t, void *, size_t);
OMNI__HOSTED("omnicore:testing", "log_count") int32_t omni__host_log_count(void);
OMNI__HOSTED("omnicore:testing", "log_line") int32_t omni__host_log_line(int32_t, void *, size_t);
OMNI__HOSTED("omnicore:testing", "event_count") int32_t omni__host_event_count(void);
OMNI__HOSTED("omnicore:testing", "event_topic")
int32_t omni__host_event_topic(int32_t, void *, size_t);
OMNI__HOSTED("omnicore:testing", "event_payload")
int32_t omni__host_event_payload(int32_t, void *, size_t);

/* A host read (answer(out, cap) -> length, or negative for none) as a NUL-terminated string
 * kept in *slot until the slot's next read. */
static inline const char *omni__host_read(char **slot, int32_t (*answer)(void *, size_t, void *),
                                          void *arg) {
    free(*slot);
    *slot = NULL;
    int32_t n = answer(NULL, 0, arg);
    if (n < 0) return NULL;
    *slot = (char *)calloc((size_t)n + 1, 1);
    answer(*slot, (size_t)n, arg);
    return *slot;
}

static inline void omni__test_reset(void) {
    omni__pairs *all[] = {&omni__host.sql_answers, &omni__host.sql_calls};
    omni__host_reset();
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) omni__clear(all[i]);
    omni__host.next_tx = 0;
    memset(omni__host.open_tx, 0, sizeof omni__host.open_tx);
}

/* -- what a test sets and reads -- */

/* Config value `key` as the host answers it: a string verbatim, anything else as JSON
 * ("" is the whole section). */
/* Config value `key` (a dotted path, "db.port", as the plugin reads it) set to `value`, which
 * the host answers verbatim. */
static inline void omni_test_config(const char *key, const char *value) {
    omni__host_config(key, strlen(key), value, strlen(value));
}
/* Exposes secret `name` to the plugin with `value` (names never set are DENIED). */
static inline void omni_test_secret(const char *name, const char *value) {
    omni__host_secret(name, strlen(name), value, strlen(value), 1);
}
static inline void omni_test_kv_set(const char *key, const char *value) {
    omni__host_kv_set(key, strlen(key), value, strlen(value));
}
static inline int32_t omni__kv_answer(void *out, size_t cap, void *key) {
    return omni__host_kv_get(key, strlen((const char *)key), out, cap);
}
/* The kv value at `key`, or NULL; kept until the next omni_test_kv_get. */
static inline const char *omni_test_kv_get(const char *key) {
    static char *value;
    return omni__host_read(&value, omni__kv_answer, (void *)key);
}
/* Lines below `level` are dropped (OMNI_LOG_INFO by default, as the host's grant). */
static inline void omni_test_log_level(int level) { omni__host_log_level(level); }
static inline size_t omni_test_log_count(void) { return (size_t)omni__host_log_count(); }
static inline int32_t omni__log_answer(void *out, size_t cap, void *i) {
    return omni__host_log_line((int32_t)(uintptr_t)i, out, cap);
}
/* Logged line i's "LEVEL message"'s message (oldest first), or NULL. */
static inline const char *omni_test_log_line(size_t i) {
    static char *line;
    const char *text = omni__host_read(&line, omni__log_answer, (void *)(uintptr_t)i);
    const char *space = text ? strchr(text, ' ') : NULL;
    return space ? space + 1 : NULL;
}
static inline size_t omni_test_event_count(void) { return (size_t)omni__host_event_count(); }
static inline int32_t omni__topic_answer(void *out, size_t cap, void *i) {
    return omni__host_event_topic((int32_t)(uintptr_t)i, out, cap);
}
static inline int32_t omni__payload_answer(void *out, size_t cap, void *i) {
    return omni__host_event_payload((int32_t)(uintptr_t)i, out, cap);
}
static inline const char *omni_test_event_topic(size_t i) {
    static char *topic;
    return omni__host_read(&topic, omni__topic_answer, (void *)(uintptr_t)i);
}
static inline const char *omni_test_event_payload(size_t i) {
    static char *payload;
    return omni__host_read(&payload, omni__payload_answer, (void *)(uintptr_t)i);
}
/* What omni_sql_query/execute answer for statement `sql` (exact text, any connector): the
 * result JSON ({"columns": [...], "rows": [...]} or {"rows_affected": n}), or a failure as
 * the host words it ("UNAVAILABLE: ...", "DENIED: ...", "INVALID: ..."). A statement with no
 * answer gets no rows ({"rows_affected": 0} for execute). */
static inline void omni_test_sql_answer(const char *sql, const char *answer) {
    omni__put(&omni__host.sql_answers, sql, strlen(sql), answer, strlen(answer));
}
static inline size_t omni_test_sql_count(void) { return omni__host.sql_calls.n; }
/* Call i's connector, and its request JSON ({"sql", "params", "tx"?}) or "BEGIN n",
 * "COMMIT n", "ROLLBACK n". */
static inline const char *omni_test_sql_connector(size_t i) {
    return i < omni__host.sql_calls.n ? omni__host.sql_calls.items[i].key : NULL;
}
static inline const char *omni_test_sql_request(size_t i) {
    return i < omni__host.sql_calls.n ? omni__host.sql_calls.items[i].value : NULL;
}
/* The Redis value at `key` (as the plugin names it: the host's prefix is the plugin's own), or
 * NULL (a hash, list or set too); its TTL in seconds (-1 none, -2 no key). The clock does not
 * move. The value is kept until the next omni_test_redis_get. */
static inline const char *omni_test_redis_get(const char *key) {
    static char *value;
    free(value);
    value = NULL;
    int32_t n = omni__redis_get(key, strlen(key), NULL, 0);
    if (n < 0) return NULL;
    value = (char *)calloc((size_t)n + 1, 1);
    omni__redis_get(key, strlen(key), value, (size_t)n);
    return value;
}
static inline long long omni_test_redis_ttl(const char *key) {
    return omni__redis_ttl(key, strlen(key));
}
static inline void omni_test_redis_set(const char *key, const char *value) {
    omni__redis_set(key, strlen(key), value, strlen(value));
}

/* ---- the fakes: the SDK's imports under OMNI_TESTING ------------------------------------ */

static inline int32_t omni__copy_out(const omni__pair *p, void *out, size_t cap) {
    if (!p) return OMNI_NOT_FOUND;
    if (p->len <= cap) memcpy(out, p->value, p->len);
    return (int32_t)p->len;
}

/* A §3.3 block of `text` (an error block when is_error), from omni_alloc as the host's. */
static inline int64_t omni__test_block(const char *text, size_t len, int is_error) {
    char *p = (char *)omni_alloc(len);
    if (len) memcpy(p, text, len);
    return (int64_t)(((uint64_t)(uintptr_t)p << 32) | (is_error ? 0x80000000u : 0u) |
                     (uint64_t)len);
}

static inline int64_t omni__test_buf_block(omni_buf *b, int is_error) {
    int64_t r = omni__test_block(b->ptr ? b->ptr : "", b->len, is_error);
    omni_buf_free(b);
    return r;
}

__attribute__((format(printf, 1, 2))) static inline int64_t omni__test_error(const char *fmt,
                                                                             ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
    return omni__test_block(msg, len, 1);
}

/* -- not modelled: OMNI_UNAVAILABLE -- */
#define OMNI__UNMODELLED "UNAVAILABLE: the C test host does not model "
__attribute__((weak)) int32_t omni__vectors_upsert(const void *a, size_t b, const void *c,
                                                   size_t d, const float *e, int32_t f,
                                                   const void *g, size_t h) {
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f, (void)g, (void)h;
    return OMNI_UNAVAILABLE;
}
__attribute__((weak)) int64_t omni__vectors_search(const void *a, size_t b, const float *c,
                                                   int32_t d, int32_t e) {
    (void)a, (void)b, (void)c, (void)d, (void)e;
    return omni__test_error(OMNI__UNMODELLED "vectors");
}
__attribute__((weak)) int32_t omni__vectors_delete(const void *a, size_t b, const void *c,
                                                   size_t d) {
    (void)a, (void)b, (void)c, (void)d;
    return OMNI_UNAVAILABLE;
}
__attribute__((weak)) int64_t omni__vectors_query(const void *a, size_t b, const float *c,
                                                  int32_t d, int32_t e, const void *f,
                                                  size_t g) {
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)f, (void)g;
    return omni__test_error(OMNI__UNMODELLED "vectors");
}
__attribute__((weak)) int64_t omni__http_request(const void *a, size_t b, const void *c,
                                                 size_t d) {
    (void)a, (void)b, (void)c, (void)d;
    return omni__test_error(OMNI__UNMODELLED "http");
}

/* -- sql: scripted answers, every call recorded -- */

static inline void omni__record(omni__pairs *m, const char *key, const char *value, size_t len) {
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->items = (omni__pair *)realloc(m->items, m->cap * sizeof *m->items);
    }
    omni__pair *p = &m->items[m->n++];
    p->key = omni__dup(key, strlen(key));
    p->value = omni__dup(value, len);
    p->len = len;
}

static inline int omni__tx_slot(int64_t tx) {
    for (int i = 0; i < 64; i++)
        if (omni__host.open_tx[i] == tx) return i;
    return -1;
}

/* Why a query's scripted answer is not shaped as the host's ({"columns": [{"name", "type"}...],
 * "rows": [[one value per column]...]}), or NULL: a plugin tested on another shape would pass
 * here and fail live. */
static inline const char *omni__not_the_hosts(const char *text, size_t len) {
    omni_json doc, columns, rows, item, key, field;
    if (omni_json_parse(text, len, &doc, NULL) != 0) return "it is not JSON";
    if (omni_json_get(doc, "columns", &columns) != 1 || columns.type != OMNI_JSON_ARRAY ||
        omni_json_get(doc, "rows", &rows) != 1 || rows.type != OMNI_JSON_ARRAY)
        return "a query's answer has columns and rows, both arrays";
    size_t ncolumns = 0;
    omni_json_iter it = omni_json_iterate(columns);
    while (omni_json_next(&it, &key, &item)) {
        if (item.type != OMNI_JSON_OBJECT)
            return "a column is an object {\"name\", \"type\"}, never a bare name";
        if (omni_json_get(item, "name", &field) != 1 || field.type != OMNI_JSON_STRING ||
            omni_json_get(item, "type", &field) != 1 || field.type != OMNI_JSON_STRING)
            return "a column has a name and a type, both strings";
        ncolumns++;
    }
    it = omni_json_iterate(rows);
    while (omni_json_next(&it, &key, &item)) {
        if (item.type != OMNI_JSON_ARRAY) return "a row is an array of the columns' values";
        size_t n = 0;
        omni_json_iter cells = omni_json_iterate(item);
        while (omni_json_next(&cells, &key, &field)) n++;
        if (n != ncolumns) return "a row has one value per column";
    }
    return NULL;
}

static inline int64_t omni__test_sql(int execute, const void *conn, size_t conn_len,
                                     const void *req, size_t req_len) {
    char *name = omni__dup(conn, conn_len);
    omni__record(&omni__host.sql_calls, name, (const char *)req, req_len);
    free(name);
    omni_json doc, sql, tx;
    char *text = NULL;
    if (omni_json_parse(req, req_len, &doc, NULL) != 0 || omni_json_get(doc, "sql", &sql) != 1 ||
        !(text = omni_json_string(sql, NULL)))
        return omni__test_error("INVALID: the request is not {\"sql\": ..., \"params\": [...]}");
    int64_t handle = 0;
    if (omni_json_get(doc, "tx", &tx) == 1 &&
        (omni_json_int(tx, &handle) != 0 || handle <= 0 || omni__tx_slot(handle) < 0)) {
        free(text);
        return omni__test_error("INVALID: tx is not a transaction of this call");
    }
    omni__pair *answer = omni__find(&omni__host.sql_answers, text, strlen(text));
    free(text);
    if (!answer)
        return execute ? omni__test_block("{\"rows_affected\":0}", 19, 0)
                       : omni__test_block("{\"columns\":[],\"rows\":[]}", 24, 0);
    int is_error = omni__status_of_message(answer->value, answer->len) != OMNI_UNAVAILABLE ||
                   strncmp(answer->value, "UNAVAILABLE:", 12) == 0;
    const char *why = is_error || execute ? NULL : omni__not_the_hosts(answer->value, answer->len);
    if (why)
        return omni__test_error("INVALID: omni_test_sql_answer: %s is not an answer the host "
                                "sends: %s (sdk/contract/host.json)", answer->value, why);
    return omni__test_block(answer->value, answer->len, is_error);
}
__attribute__((weak)) int64_t omni__sql_query(const void *c, size_t cl, const void *r,
                                              size_t rl) {
    return omni__test_sql(0, c, cl, r, rl);
}
__attribute__((weak)) int64_t omni__sql_execute(const void *c, size_t cl, const void *r,
                                                size_t rl) {
    return omni__test_sql(1, c, cl, r, rl);
}
__attribute__((weak)) int64_t omni__sql_begin(const void *conn, size_t len) {
    int slot = omni__tx_slot(0);
    if (slot < 0) return OMNI_QUOTA;
    int64_t tx = omni__host.open_tx[slot] = ++omni__host.next_tx;
    char *name = omni__dup(conn, len), what[32];
    int n = snprintf(what, sizeof what, "BEGIN %lld", (long long)tx);
    omni__record(&omni__host.sql_calls, name, what, (size_t)n);
    free(name);
    return tx;
}
static inline int32_t omni__test_end(int64_t tx, const char *verb) {
    int slot = tx > 0 ? omni__tx_slot(tx) : -1;
    if (slot < 0) return OMNI_NOT_FOUND;
    omni__host.open_tx[slot] = 0;
    char what[40];
    int n = snprintf(what, sizeof what, "%s %lld", verb, (long long)tx);
    omni__record(&omni__host.sql_calls, "", what, (size_t)n);
    return 0;
}
__attribute__((weak)) int32_t omni__sql_commit(int64_t tx) { return omni__test_end(tx, "COMMIT"); }
__attribute__((weak)) int32_t omni__sql_rollback(int64_t tx) {
    return omni__test_end(tx, "ROLLBACK");
}

/* -- redis: the runner's, held to the host's answers -- */

__attribute__((weak)) int64_t omni__redis_command(const void *conn, size_t conn_len,
                                                  const void *req, size_t req_len) {
    (void)conn, (void)conn_len;
    int64_t answer = omni__redis_run(req, req_len);
    size_t len = (size_t)(answer & 0x7FFFFFFF);
    char *block = (char *)malloc(len + 1);
    omni__redis_reply(block);
    int64_t r = omni__test_block(block, len, (answer >> 31) & 1);
    free(block);
    return r;
}

/* ---- the test program ------------------------------------------------------------------- */

static inline int omni__wanted(const char *name, int argc, char **argv) {
    if (argc <= 1) return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

static inline void omni__print_log(void) {
    static char *line;
    for (size_t l = 0; l < omni_test_log_count(); l++)
        printf("    log %s\n", omni__host_read(&line, omni__log_answer, (void *)(uintptr_t)l));
}

/* Called by the runner after a test trapped (omni_panic, a bad pointer): which one, and
 * its log (a panic's message is its last line). */
__attribute__((weak, export_name("omni_test_trapped"))) void omni__test_trapped(void) {
    printf("FAIL %s (trapped)\n", omni__running);
    omni__print_log();
    fflush(stdout);
}

__attribute__((weak)) int main(int argc, char **argv) {
    int ran = 0, failed = 0;
    for (int i = 0; i < omni__ntests; i++) {
        if (!omni__wanted(omni__tests[i].name, argc, argv)) continue;
        omni__test_reset();
        omni__failed_now = 0;
        omni__running = omni__tests[i].name;
        omni__tests[i].fn();
        ran++;
        if (omni__failed_now) {
            failed++;
            omni__print_log();
        } else {
            printf("ok   %s\n", omni__tests[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", ran - failed, failed);
    fflush(stdout);
    return failed > 255 ? 255 : failed;
}

#endif /* OMNICORE_TEST_H */
