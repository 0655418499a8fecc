/*
 * omnicore_test.h - unit tests for C plugins, run by `omnicore test`.
 *
 * `omnicore test` compiles the plugin's top-level .c files with every .c file in its tests/
 * folder for wasm32-wasi as one program (clang, the same target as the build, a reactor, with
 * -DOMNI_TESTING), and runs it on omnicore's test host (omnicore.toolchains.testhost): every
 * capability the plugin imports (log, config, kv, memory, vectors, tasks, events, secrets,
 * http, sql, redis) is the host's own code over in-memory services, every one granted, and the
 * functions below set it up and read it back through its omnicore:testing imports. The HTTP
 * and SQL answers a test scripts stay here, since only the test knows them: they are handed to
 * the host just before each request, and the host's own code reads the request, refuses what
 * it refuses and checks a query's answer for the host's shape. Every test starts from an
 * empty host.
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

/* ---- the test host (omnicore.toolchains.testhost.control) ------------------------------- */

/* A fresh host, and what a test sets and reads of it. A read answers the length and writes
 * only when it fits (§3.2). */
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
OMNI__HOSTED("omnicore:testing", "http_answer")
void omni__host_http_answer(const void *, size_t, const void *, size_t, int32_t);
OMNI__HOSTED("omnicore:testing", "sql_answer") void omni__host_sql_answer(const void *, size_t, int32_t);
OMNI__HOSTED("omnicore:testing", "sql_kind")
int32_t omni__host_sql_kind(const void *, size_t, const void *, size_t);
OMNI__HOSTED("omnicore:testing", "sql_statements") int32_t omni__host_statements(void *, size_t);
OMNI__HOSTED("omnicore:testing", "redis_reset") void omni__redis_reset(void);
OMNI__HOSTED("omnicore:testing", "redis_get")
int32_t omni__redis_get(const void *, size_t, void *, size_t);
OMNI__HOSTED("omnicore:testing", "redis_ttl") int64_t omni__redis_ttl(const void *, size_t);
OMNI__HOSTED("omnicore:testing", "redis_set")
void omni__redis_set(const void *, size_t, const void *, size_t);

/* A host read (answer(out, cap, arg) -> length, or negative for none) as a NUL-terminated
 * string kept in *slot until the slot's next read. */
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

/* The answers only the test knows (HTTP by target, SQL by statement), handed to the host just
 * before the plugin's request reaches it (omni__test_answer_http/sql, called by omnicore.h):
 * the host never calls into a test program for them. */
typedef struct {
    char *key;
    char *value;
    size_t len;
    int status;
} omni__answer;

typedef struct {
    omni__answer *items;
    size_t n, cap;
} omni__answers;

__attribute__((weak)) omni__answers omni__sql_answers = {0};
__attribute__((weak)) omni__answers omni__http_answers = {0};

static inline char *omni__dup(const void *p, size_t n) {
    char *s = (char *)malloc(n + 1);
    if (n) memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static inline omni__answer *omni__find(omni__answers *m, const char *key) {
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->items[i].key, key) == 0) return &m->items[i];
    return NULL;
}

static inline void omni__put(omni__answers *m, const char *key, int status, const char *value) {
    omni__answer *p = omni__find(m, key);
    if (!p) {
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 8;
            m->items = (omni__answer *)realloc(m->items, m->cap * sizeof *m->items);
        }
        p = &m->items[m->n++];
        p->key = omni__dup(key, strlen(key));
        p->value = NULL;
    }
    free(p->value);
    p->len = strlen(value);
    p->value = omni__dup(value, p->len);
    p->status = status;
}

static inline void omni__clear(omni__answers *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->items[i].key);
        free(m->items[i].value);
    }
    m->n = 0;
}

static inline void omni__test_reset(void) {
    omni__host_reset();
    omni__clear(&omni__sql_answers);
    omni__clear(&omni__http_answers);
}

/* A failure as the host words it ("UNAVAILABLE: ...", "DENIED: ...", ...)? */
static inline int omni__is_failure(const char *text, size_t len) {
    return omni__status_of_message(text, len) != OMNI_UNAVAILABLE ||
           (len >= 12 && memcmp(text, "UNAVAILABLE:", 12) == 0);
}

/* The request's member `name` as a string (malloc'd), or NULL. */
static inline char *omni__member(const char *json, size_t len, const char *name) {
    omni_json doc, value;
    if (omni_json_parse(json, len, &doc, NULL) != 0 || omni_json_get(doc, name, &value) != 1)
        return NULL;
    return omni_json_string(value, NULL);
}

__attribute__((weak)) void omni__test_answer_sql(const char *conn, const char *req, size_t len,
                                                 int query) {
    (void)conn, (void)query;
    char *sql = omni__member(req, len, "sql");
    omni__answer *a = sql ? omni__find(&omni__sql_answers, sql) : NULL;
    if (a) {
        omni__host_sql_answer(a->value, a->len, omni__is_failure(a->value, a->len));
    } else {
        omni_buf why = {0};
        omni_buf_printf(&why, "UNAVAILABLE: the test gave no omni_test_sql_answer for %s",
                        sql ? sql : "this request");
        omni__host_sql_answer(why.ptr, why.len, 1);
        omni_buf_free(&why);
    }
    free(sql);
}

__attribute__((weak)) void omni__test_answer_http(const char *req, size_t len) {
    char *target = omni__member(req, len, "url");
    if (!target) {  /* through a connector: "connector:path" */
        char *conn = omni__member(req, len, "connector"), *path = omni__member(req, len, "path");
        omni_buf t = {0};
        omni_buf_printf(&t, "%s:%s", conn ? conn : "", path ? path : "");
        target = omni__dup(t.ptr ? t.ptr : "", t.len);
        omni_buf_free(&t);
        free(conn);
        free(path);
    }
    omni__answer *a = omni__find(&omni__http_answers, target);
    omni_buf head = {0};
    if (a && a->status > 0) {
        omni_buf_printf(&head, "{\"status\":%d,\"headers\":[]}", a->status);
        omni__host_http_answer(head.ptr, head.len, a->value, a->len, 0);
    } else if (a) {
        omni__host_http_answer(a->value, a->len, "", 0, 1);
    } else {
        omni_buf_printf(&head, "UNAVAILABLE: %s: the test gave no omni_test_http_answer for it",
                        target);
        omni__host_http_answer(head.ptr, head.len, "", 0, 1);
    }
    omni_buf_free(&head);
    free(target);
}

/* -- what a test sets and reads -- */

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
 * result JSON ({"columns": [{"name", "type"}...], "rows": [[...]]}: a query's answer in
 * another shape fails INVALID, as the host never sends it; {"rows_affected": n} for an
 * execute), or a failure as the host words it ("UNAVAILABLE: ...", "DENIED: ...",
 * "INVALID: ..."). A statement with no answer fails UNAVAILABLE. */
static inline void omni_test_sql_answer(const char *sql, const char *answer) {
    omni__put(&omni__sql_answers, sql, 0, answer);
}
/* Connector `connector` is a `kind` one ("postgres" or "mysql"), as the operator's
 * connectors.<name>.kind says: its statements are judged by that server's grammar (§4.10,
 * Statements), PostgreSQL's unless a test names another. 0, or -3 (INVALID) for another kind. */
static inline int32_t omni_test_sql_kind(const char *connector, const char *kind) {
    return omni__host_sql_kind(connector, strlen(connector), kind, strlen(kind));
}
/* omni_http_request to `url` (or "connector:path" through a connector) answers `status` and
 * `body`; any other request fails UNAVAILABLE. */
static inline void omni_test_http_answer(const char *url, int status, const char *body) {
    omni__put(&omni__http_answers, url, status, body);
}
/* omni_http_request to `url` fails with `message`, as the host words it ("DENIED: ..."). */
static inline void omni_test_http_failure(const char *url, const char *message) {
    omni__put(&omni__http_answers, url, 0, message);
}
static inline int32_t omni__statements_answer(void *out, size_t cap, void *arg) {
    (void)arg;
    return omni__host_statements(out, cap);
}
/* The statements the host ran ([connector, sql, params, tx] each, BEGIN/COMMIT/ROLLBACK
 * too), entry i in *entry; 0 when there is none. */
static inline int omni__statement(size_t i, omni_json *entry) {
    static char *text;
    omni_json doc, key;
    const char *all = omni__host_read(&text, omni__statements_answer, NULL);
    if (!all || omni_json_parse(all, strlen(all), &doc, NULL) != 0) return 0;
    omni_json_iter it = omni_json_iterate(doc);
    for (size_t n = 0; omni_json_next(&it, &key, entry); n++)
        if (n == i) return 1;
    return 0;
}
/* Field f of statement i. */
static inline int omni__statement_field(size_t i, size_t f, omni_json *out) {
    omni_json entry, key;
    if (!omni__statement(i, &entry)) return 0;
    omni_json_iter it = omni_json_iterate(entry);
    for (size_t n = 0; omni_json_next(&it, &key, out); n++)
        if (n == f) return 1;
    return 0;
}
static inline size_t omni_test_sql_count(void) {
    size_t n = 0;
    omni_json entry;
    while (omni__statement(n, &entry)) n++;
    return n;
}
/* Statement i's connector, or NULL. */
static inline const char *omni_test_sql_connector(size_t i) {
    static char *name;
    omni_json field;
    free(name);
    name = omni__statement_field(i, 0, &field) ? omni_json_string(field, NULL) : NULL;
    return name;
}
/* Statement i as the plugin sent it ({"sql", "params", "tx"?}, the parameters as the host
 * logs them), or "BEGIN n", "COMMIT n", "ROLLBACK n" (transactions numbered from 1). */
static inline const char *omni_test_sql_request(size_t i) {
    static omni_buf out;
    omni_json sql, params, tx;
    if (!omni__statement_field(i, 1, &sql) || !omni__statement_field(i, 2, &params) ||
        !omni__statement_field(i, 3, &tx))
        return NULL;
    char *text = omni_json_string(sql, NULL);
    if (!text) return NULL;
    omni_buf_free(&out);
    if (strcmp(text, "BEGIN") == 0 || strcmp(text, "COMMIT") == 0 ||
        strcmp(text, "ROLLBACK") == 0) {
        omni_buf_printf(&out, "%s %.*s", text, (int)tx.len, tx.ptr);
    } else {
        omni_buf_puts(&out, "{\"sql\":");
        omni_buf_json_string(&out, text, strlen(text));
        omni_buf_printf(&out, ",\"params\":%.*s", (int)params.len, params.ptr);
        if (tx.type != OMNI_JSON_NULL) omni_buf_printf(&out, ",\"tx\":%.*s", (int)tx.len, tx.ptr);
        omni_buf_puts(&out, "}");
    }
    free(text);
    return out.ptr;
}
/* The Redis value at `key` (as the plugin names it: the host's prefix is the plugin's own), or
 * NULL (a hash, list or set too); its TTL in seconds (-1 none, -2 no key). The clock does not
 * move. The value is kept until the next omni_test_redis_get. */
static inline int32_t omni__redis_answer(void *out, size_t cap, void *key) {
    return omni__redis_get(key, strlen((const char *)key), out, cap);
}
static inline const char *omni_test_redis_get(const char *key) {
    static char *value;
    return omni__host_read(&value, omni__redis_answer, (void *)key);
}
static inline long long omni_test_redis_ttl(const char *key) {
    return omni__redis_ttl(key, strlen(key));
}
static inline void omni_test_redis_set(const char *key, const char *value) {
    omni__redis_set(key, strlen(key), value, strlen(value));
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

/* The program's entry: it is a reactor (a command would run its constructors again at every
 * call into it, and the host calls omni_alloc for its §3.3 answers), so main is called here. */
extern void _initialize(void);
extern int __main_void(void);
__attribute__((weak, export_name("_start"))) void omni__test_start(void) {
    _initialize();
    exit(__main_void());
}

#endif /* OMNICORE_TEST_H */
