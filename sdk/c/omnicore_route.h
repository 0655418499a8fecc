/*
 * omnicore_route.h - HTTP route handlers in C (specs/http-routes.md §2, §3, §8).
 *
 * A route handler answers the HTTP requests an operator maps to it. It is an ordinary handler
 * (OMNI_HANDLER) whose input is the host's request envelope and whose output the response
 * block; OMNI_ROUTE decodes and encodes them, so the function sees a request and returns a
 * response:
 *
 *     #include "omnicore_route.h"
 *     OMNI_ROUTE(hello, req) {
 *         char *name = omni_request_param(req, "name");          // NULL when absent
 *         omni_response res = omni_response_text(200, name ? name : "world");
 *         free(name);
 *         return res;
 *     }
 *
 * A malformed envelope is answered 400 (the function is not called) and a response made with
 * omni_response_error 500 with a short text body (the message goes to the plugin's log, never
 * to the client): the call itself never fails, so the route answers whatever happens.
 *
 * Every string an accessor returns is malloc'd and NUL-terminated (free it), or NULL when
 * absent. The request's own strings and body live until the function returns.
 */
#ifndef OMNICORE_ROUTE_H
#define OMNICORE_ROUTE_H

#include "omnicore.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the request (specs/http-routes.md §2) ------------------------------------------------ */

typedef struct {
    char *method;          /* upper case, as sent */
    char *path;            /* after the routes' prefix, percent-decoded, starting with "/" */
    char *query;           /* the raw query string without "?" ("" when none) */
    char *route, *url, *remote; /* "" when the envelope has none */
    omni_json params;      /* the pattern's variables: read with omni_request_param */
    omni_json headers;     /* lower-case names: read with omni_request_header */
    omni_json auth;        /* what the host checked: {"mode": ...} (OMNI_JSON_INVALID if absent) */
    const uint8_t *body;   /* raw bytes, body_len of them */
    size_t body_len;
} omni_request;

static inline int omni__route_same(const char *a, const char *b, size_t n, int nocase) {
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (nocase) {
            x = (char)(x >= 'A' && x <= 'Z' ? x + 32 : x);
            y = (char)(y >= 'A' && y <= 'Z' ? y + 32 : y);
        }
        if (x != y) return 0;
    }
    return 1;
}

/* A member of a JSON object of strings, decoded; `nocase` compares names ignoring case. */
static inline char *omni__route_member(omni_json obj, const char *name, int nocase) {
    omni_json_iter it = omni_json_iterate(obj);
    omni_json k, v;
    size_t want = strlen(name);
    while (omni_json_next(&it, &k, &v)) {
        size_t klen = 0;
        char *key = omni_json_string(k, &klen);
        int match = key && klen == want && omni__route_same(key, name, want, nocase);
        free(key);
        if (match) return omni_json_string(v, NULL);
    }
    return NULL;
}

/* The path variable `name` ("/notes/{id}" -> "id"), or NULL. */
static inline char *omni_request_param(const omni_request *req, const char *name) {
    return omni__route_member(req->params, name, 0);
}

/* The value of header `name` in any case ("User-Agent"), or NULL. */
static inline char *omni_request_header(const omni_request *req, const char *name) {
    return omni__route_member(req->headers, name, 1);
}

static inline int omni__route_hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* s[0..n) form-decoded ("+" is a space, "%XX" a byte; a stray "%" is kept) into malloc'd text. */
static inline char *omni__route_unescape(const char *s, size_t n) {
    char *out = (char *)malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '+') out[o++] = ' ';
        else if (s[i] == '%' && i + 2 < n && (hi = omni__route_hex(s[i + 1])) >= 0 &&
                 (lo = omni__route_hex(s[i + 2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else out[o++] = s[i];
    }
    out[o] = '\0';
    return out;
}

/* The index-th value (0 first) of query parameter `name`, or NULL: the raw query read by
 * application/x-www-form-urlencoded rules, blank values kept ("x=1&x=2": index 0 is "1",
 * index 1 is "2"), as the host's query_params are. */
static inline char *omni_request_query_param(const omni_request *req, const char *name,
                                             size_t index) {
    const char *q = req->query;
    size_t want = strlen(name);
    while (*q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len) {
            const char *eq = (const char *)memchr(q, '=', len);
            size_t klen = eq ? (size_t)(eq - q) : len;
            char *key = omni__route_unescape(q, klen);
            int match = key && strlen(key) == want && memcmp(key, name, want) == 0;
            free(key);
            if (match && index-- == 0) return eq ? omni__route_unescape(eq + 1, len - klen - 1)
                                                 : omni__route_unescape("", 0);
        }
        q += len + (end ? 1 : 0);
    }
    return NULL;
}

/* How many values query parameter `name` has. */
static inline size_t omni_request_query_count(const omni_request *req, const char *name) {
    size_t n = 0;
    char *v;
    while ((v = omni_request_query_param(req, name, n)) != NULL) {
        free(v);
        n++;
    }
    return n;
}

/* ---- the response (specs/http-routes.md §3) ---------------------------------------------- */

typedef struct {
    char *name, *value;
} omni__route_header;

typedef struct {
    int status;
    omni__route_header *headers; /* set with omni_response_header */
    size_t n_headers;
    omni_buf body;               /* append with omni_response_body / omni_buf_* */
    char *error;                 /* set by omni_response_error: answered 500, this logged */
    int failed;                  /* an allocation failed: answered 500 */
} omni_response;

/* A response with `status`, no header and an empty body. */
static inline omni_response omni_response_new(int status) {
    omni_response r;
    memset(&r, 0, sizeof r);
    r.status = status;
    return r;
}

/* Adds header `name` (lower-cased). Given twice, the header is sent once per value (as
 * set-cookie needs). */
static inline void omni_response_header(omni_response *r, const char *name, const char *value) {
    omni__route_header *grown =
        (omni__route_header *)realloc(r->headers, (r->n_headers + 1) * sizeof *grown);
    if (!grown) {
        r->failed = 1;
        return;
    }
    r->headers = grown;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        r->failed = 1;
        return;
    }
    for (char *p = n; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    r->headers[r->n_headers].name = n;
    r->headers[r->n_headers].value = v;
    r->n_headers++;
}

/* Appends `len` bytes to the body. */
static inline void omni_response_body(omni_response *r, const void *data, size_t len) {
    omni_buf_append(&r->body, data, len);
}

/* `text/plain; charset=utf-8` with `text` as the body. */
static inline omni_response omni_response_text(int status, const char *text) {
    omni_response r = omni_response_new(status);
    omni_response_header(&r, "content-type", "text/plain; charset=utf-8");
    omni_response_body(&r, text, strlen(text));
    return r;
}

/* `application/json` with `json` (JSON text the plugin wrote, e.g. with omni_buf) as the body. */
static inline omni_response omni_response_json(int status, const char *json) {
    omni_response r = omni_response_new(status);
    omni_response_header(&r, "content-type", "application/json");
    omni_response_body(&r, json, strlen(json));
    return r;
}

/* The function failed: answered 500 "internal error"; the printf-formatted message is logged. */
__attribute__((format(printf, 1, 2))) static inline omni_response omni_response_error(
    const char *fmt, ...) {
    omni_response r = omni_response_new(500);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    r.error = n >= 0 ? (char *)malloc((size_t)n + 1) : NULL;
    if (r.error) {
        va_start(ap, fmt);
        vsnprintf(r.error, (size_t)n + 1, fmt, ap);
        va_end(ap);
    } else r.failed = 1;
    return r;
}

static inline void omni_response_free(omni_response *r) {
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->error);
    omni_buf_free(&r->body);
    memset(r, 0, sizeof *r);
}

/* The response block: head length (u32 LE), {"status": N, "headers": {...}}, body. A header
 * set more than once is a list of its values. Takes ownership of (frees) *r. */
static inline omni_result omni__route_encode(omni_response *r) {
    omni_buf out = {0};
    omni_buf_append(&out, "\0\0\0\0", 4);
    omni_buf_printf(&out, "{\"status\":%d,\"headers\":{", r->status);
    int first = 1;
    for (size_t i = 0; i < r->n_headers; i++) {
        const char *name = r->headers[i].name;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(r->headers[j].name, name) == 0;
        if (seen) continue; /* written with the first of its name */
        size_t count = 0;
        for (size_t j = i; j < r->n_headers; j++) count += strcmp(r->headers[j].name, name) == 0;
        if (!first) omni_buf_append(&out, ",", 1);
        first = 0;
        omni_buf_json_string(&out, name, strlen(name));
        omni_buf_append(&out, count > 1 ? ":[" : ":", count > 1 ? 2 : 1);
        for (size_t j = i, k = 0; j < r->n_headers; j++) {
            if (strcmp(r->headers[j].name, name) != 0) continue;
            if (k++) omni_buf_append(&out, ",", 1);
            omni_buf_json_string(&out, r->headers[j].value, strlen(r->headers[j].value));
        }
        if (count > 1) omni_buf_append(&out, "]", 1);
    }
    omni_buf_append(&out, "}}", 2);
    if (!out.failed) {
        uint32_t head = (uint32_t)(out.len - 4);
        for (int k = 0; k < 4; k++) out.ptr[k] = (char)(head >> (8 * k));
    }
    omni_buf_append(&out, r->body.ptr ? r->body.ptr : "", r->body.len);
    omni_response_free(r);
    return omni_buf_result(&out);
}

/* A string member of the head, malloc'd ("" when absent or not a string); NULL out of memory. */
static inline char *omni__route_string(omni_json head, const char *key) {
    omni_json v;
    char *s = omni_json_get(head, key, &v) == 1 ? omni_json_string(v, NULL) : NULL;
    return s ? s : strdup("");
}

/* Decodes the envelope into *req (spans into `input`); NULL, or why it is not an envelope. */
static inline const char *omni__route_decode(omni_bytes input, omni_request *req) {
    memset(req, 0, sizeof *req);
    if (input.len < 4) return "too short for a request envelope";
    size_t n = (size_t)input.ptr[0] | (size_t)input.ptr[1] << 8 | (size_t)input.ptr[2] << 16 |
               (size_t)input.ptr[3] << 24;
    if (n > input.len - 4) return "the head is longer than the envelope";
    omni_json head, method, path;
    if (omni_json_parse(input.ptr + 4, n, &head, NULL) != 0) return "the head is not JSON";
    if (head.type != OMNI_JSON_OBJECT) return "the head is not a JSON object";
    if (omni_json_get(head, "method", &method) != 1 || method.type != OMNI_JSON_STRING ||
        omni_json_get(head, "path", &path) != 1 || path.type != OMNI_JSON_STRING)
        return "the head has no \"method\" and \"path\" strings";
    req->method = omni_json_string(method, NULL);
    req->path = omni_json_string(path, NULL);
    req->query = omni__route_string(head, "query");
    req->route = omni__route_string(head, "route");
    req->url = omni__route_string(head, "url");
    req->remote = omni__route_string(head, "remote");
    if (!req->method || !req->path) return "the method or path is not a valid string";
    if (!req->query || !req->route || !req->url || !req->remote) return "out of memory";
    if (omni_json_get(head, "params", &req->params) != 1) req->params.type = OMNI_JSON_INVALID;
    if (omni_json_get(head, "headers", &req->headers) != 1) req->headers.type = OMNI_JSON_INVALID;
    if (omni_json_get(head, "auth", &req->auth) != 1) req->auth.type = OMNI_JSON_INVALID;
    req->body = input.ptr + 4 + n;
    req->body_len = input.len - 4 - n;
    return NULL;
}

static inline void omni__route_free(omni_request *req) {
    free(req->method);
    free(req->path);
    free(req->query);
    free(req->route);
    free(req->url);
    free(req->remote);
}

/* Runs a route function on a handler's input: the response block, whatever happens. */
static inline omni_result omni__route_call(omni_response (*fn)(const omni_request *),
                                           omni_bytes input) {
    omni_request req;
    omni_response res;
    const char *malformed = omni__route_decode(input, &req);
    if (malformed) {
        omni_buf msg = {0};
        omni_buf_printf(&msg, "malformed request envelope: %s", malformed);
        res = omni_response_text(400, msg.ptr ? msg.ptr : "malformed request envelope");
        omni_buf_free(&msg);
    } else {
        res = fn(&req);
    }
    omni__route_free(&req);
    if (res.error || res.failed || res.body.failed) {
        omni_logf(OMNI_LOG_ERROR, "route handler failed: %s",
                  res.error ? res.error : "out of memory building the response");
        omni_response_free(&res);
        res = omni_response_text(500, "internal error");
    }
    return omni__route_encode(&res);
}

/* OMNI_ROUTE(name, req) { ... return omni_response_text(200, "hi"); } exports handler `name`
 * answering HTTP requests; the body sees `const omni_request *req`. */
#define OMNI_ROUTE(name, req)                                                                 \
    static omni_response omni__route_##name(const omni_request *req);                         \
    OMNI_HANDLER(name, omni__input_##name) {                                                  \
        return omni__route_call(omni__route_##name, omni__input_##name);                      \
    }                                                                                         \
    static omni_response omni__route_##name(const omni_request *req)

#ifdef __cplusplus
}
#endif

#endif /* OMNICORE_ROUTE_H */
