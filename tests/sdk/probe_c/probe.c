/* Test probe for the C SDK: one handler per SDK feature, each reporting what it saw as text
 * the test asserts on. Built by tests/sdk/test_c.py. */
#include "omnicore.h"

/* Appends "ok(<text>)" or "err(<status>,<message>)" for an omni_data, then frees it. */
static void show(omni_buf *b, const char *label, omni_data d) {
    omni_buf_printf(b, "%s=", label);
    if (d.status == OMNI_OK) omni_buf_printf(b, "ok(%s) ", d.ptr);
    else omni_buf_printf(b, "err(%d,%s) ", (int)d.status, d.ptr ? d.ptr : "");
    omni_data_free(&d);
}

/* show() as one "label=..." line. */
static void show_line(omni_buf *b, const char *label, omni_data d) {
    show(b, label, d);
    b->ptr[b->len - 1] = '\n';
}

OMNI_HANDLER(echo, input) { return omni_ok(input.ptr, input.len); }

OMNI_HANDLER(fail, input) { return omni_error("%.*s", (int)input.len, (const char *)input.ptr); }

OMNI_HANDLER(boom, input) { omni_panic("boom with %.*s", (int)input.len, (const char *)input.ptr); }

OMNI_HANDLER(big_output, input) {
    char text[32] = {0};
    memcpy(text, input.ptr, input.len < 31 ? input.len : 31);
    size_t n = (size_t)strtoull(text, NULL, 10);
    void *out = malloc(n ? n : 1);
    if (!out) return omni_error("out of memory for %zu bytes", n);
    memset(out, 'x', n);
    return omni_ok_owned(out, n);
}

OMNI_HANDLER(logging, input) {
    (void)input;
    omni_log(OMNI_LOG_TRACE, "t");
    omni_log(OMNI_LOG_DEBUG, "d");
    omni_log(OMNI_LOG_INFO, "i");
    omni_logf(OMNI_LOG_WARN, "w%d", 2);
    omni_log_n(OMNI_LOG_ERROR, "e and more", 1);
    char big[600];
    memset(big, 'L', sizeof big);
    omni_logf(OMNI_LOG_INFO, "%.*s", (int)sizeof big, big); /* over logf's stack buffer */
    omni_buf b = {0};
    omni_buf_printf(&b, "debug=%d info=%d", omni_log_enabled(OMNI_LOG_DEBUG),
                    omni_log_enabled(OMNI_LOG_INFO));
    return omni_buf_result(&b);
}

OMNI_HANDLER(config_probe, input) {
    char key[64] = {0};
    memcpy(key, input.ptr, input.len < 63 ? input.len : 63);
    omni_buf b = {0};
    show(&b, "value", omni_config_get(key));
    show(&b, "all", omni_config_get(""));
    return omni_buf_result(&b);
}

OMNI_HANDLER(kv_probe, input) {
    omni_buf b = {0};
    if (omni_kv_set("big", input.ptr, input.len) != 0) return omni_error("kv set failed");
    omni_data back = omni_kv_get("big");
    if (back.status != OMNI_OK || back.len != input.len || memcmp(back.ptr, input.ptr, input.len))
        return omni_error("kv round trip changed the value");
    omni_data_free(&back);
    int64_t hits = 0, hits2 = 0;
    omni_kv_incr("hits", 5, &hits);
    omni_kv_incr("hits", -2, &hits2);
    omni_kv_set("user:b", "two", 3);
    omni_kv_set("user:a \"q\"", "1", 1);
    int64_t ignored;
    char huge[2000] = {0};
    omni_buf_printf(&b, "len=%zu hits=%lld,%lld ", input.len, (long long)hits, (long long)hits2);
    show(&b, "missing", omni_kv_get("absent"));
    show(&b, "keys", omni_kv_list("user:"));
    omni_buf_printf(&b, "deleted=%d,%d not_int=%d too_big=%d", (int)omni_kv_delete("big"),
                    (int)omni_kv_delete("big"), (int)omni_kv_incr("user:b", 1, &ignored),
                    (int)omni_kv_set("huge", huge, sizeof huge));
    return omni_buf_result(&b);
}

OMNI_HANDLER(secrets_probe, input) {
    (void)input;
    omni_buf b = {0};
    show(&b, "token", omni_secrets_get("token"));
    show(&b, "unset", omni_secrets_get("unset"));
    show(&b, "hidden", omni_secrets_get("hidden"));
    return omni_buf_result(&b);
}

/* Headers and body of a response, as "status:x-method:body". */
static void show_response(omni_buf *b, const char *label, omni_data block) {
    omni_http_response resp;
    if (omni_http_parse(&block, &resp) != 0) {
        show(b, label, block);
        return;
    }
    omni_json head, headers, method;
    omni_json_parse(resp.head, resp.head_len, &head, NULL);
    omni_json_get(head, "headers", &headers);
    char *m = omni_json_get(headers, "x-method", &method) == 1 ? omni_json_string(method, NULL)
                                                               : NULL;
    omni_buf_printf(b, "%s=%d:%s:%.*s ", label, resp.status, m ? m : "-", (int)resp.body_len,
                    (const char *)resp.body);
    free(m);
    omni_data_free(&block);
}

/* input: the loopback server's base URL. */
OMNI_HANDLER(http_probe, input) {
    omni_buf b = {0}, req = {0};
    omni_buf_puts(&req, "{\"method\":\"POST\",\"headers\":{\"x-a\":\"1\"},\"url\":");
    omni_buf_append(&req, "\"", 1);
    omni_buf_append(&req, input.ptr, input.len);
    omni_buf_puts(&req, "/items\"}");
    show_response(&b, "post", omni_http_request(req.ptr, "payload", 7));
    omni_buf_free(&req);
    show_response(&b, "via", omni_http_request(
        "{\"method\":\"GET\",\"connector\":\"local\",\"path\":\"/repos/x\"}", "", 0));
    show(&b, "denied", omni_http_request("{\"method\":\"GET\",\"url\":\"https://denied.example/\"}",
                                         "", 0));
    return omni_buf_result(&b);
}

OMNI_HANDLER(events_probe, input) {
    int32_t rc = omni_events_publish("order.created", input.ptr, input.len);
    return rc == 0 ? omni_ok_str("published") : omni_error("publish: %d", (int)rc);
}

OMNI_HANDLER(tasks_probe, input) {
    (void)input;
    omni_buf b = {0};
    int64_t id = omni_tasks_enqueue("echo", "later", 5, 10);
    omni_buf_printf(&b, "id=%lld cancel=%d,%d unknown=%d bad_handler=%lld", (long long)id,
                    (int)omni_tasks_cancel(id), (int)omni_tasks_cancel(id),
                    (int)omni_tasks_cancel(424242), (long long)omni_tasks_enqueue("nope", "", 0, 0));
    return omni_buf_result(&b);
}

OMNI_HANDLER(memory_probe, input) {
    (void)input;
    omni_buf b = {0}, item = {0};
    omni_buf_puts(&item, "{\"text\":");
    omni_buf_json_string(&item, "likes \"green\" tea", 17);
    omni_buf_puts(&item, "}");
    int64_t id = omni_memory_remember(OMNI_MEMORY_LONG_TERM, item.ptr);
    omni_buf_free(&item);
    omni_buf_printf(&b, "id=%lld ", (long long)id);
    show(&b, "hits", omni_memory_recall("{\"query\":\"tea\",\"limit\":3}"));
    omni_buf_printf(&b, "forget=%d,%d", (int)omni_memory_forget(id), (int)omni_memory_forget(id));
    return omni_buf_result(&b);
}

OMNI_HANDLER(vectors_probe, input) {
    (void)input;
    omni_buf b = {0};
    const float a[] = {1.0f, 0.0f}, bv[] = {0.0f, 1.0f}, q[] = {1.0f, 0.25f}, one[] = {1.0f};
    omni_vectors_upsert("c", "a", a, 2, "{\"t\":1}");
    omni_vectors_upsert("c", "b", bv, 2, "");
    omni_buf_printf(&b, "mismatch=%d ", (int)omni_vectors_upsert("c", "x", one, 1, ""));
    show(&b, "search", omni_vectors_search("c", q, 2, 1));
    show(&b, "missing", omni_vectors_search("zz", q, 2, 1));
    omni_buf_printf(&b, "delete=%d,%d no_coll=%d", (int)omni_vectors_delete("c", "a"),
                    (int)omni_vectors_delete("c", "a"), (int)omni_vectors_delete("zz", "a"));
    return omni_buf_result(&b);
}

/* The memory fields of abi.md §4.4: metadata, importance, vector; recall's filter and vector. */
static int64_t remember(const char *text, const char *user, double importance, const float *vec) {
    omni_buf item = {0};
    omni_buf_puts(&item, "{\"text\":");
    omni_buf_json_string(&item, text, strlen(text));
    omni_buf_printf(&item, ",\"metadata\":{\"user\":\"%s\"},\"importance\":%g,\"vector\":", user,
                    importance);
    omni_buf_json_floats(&item, vec, 3);
    omni_buf_puts(&item, "}");
    int64_t id = omni_memory_remember(OMNI_MEMORY_SHORT_TERM, item.ptr);
    omni_buf_free(&item);
    return id;
}

OMNI_HANDLER(memory_fields, input) {
    (void)input;
    omni_buf b = {0}, q = {0};
    const float ada[] = {1, 0, 0}, bob[] = {0, 1, 0}, near_bob[] = {0.1f, 0.9f, 0};
    const float nan[] = {__builtin_nanf(""), 0, 0};
    omni_buf_printf(&b, "ids=%d\n", remember("ada ordered a blue kettle", "ada", 0.9, ada) > 0 &&
                                       remember("bob ordered a red kettle", "bob", 0.2, bob) > 0);
    show_line(&b, "ada", omni_memory_recall("{\"query\":\"kettle\",\"filter\":{\"user\":\"ada\"}}"));
    omni_buf_puts(&q, "{\"query\":\"kettle\",\"limit\":1,\"vector\":");
    omni_buf_json_floats(&q, near_bob, 3);
    omni_buf_puts(&q, "}");
    show_line(&b, "near_bob", omni_memory_recall(q.ptr));
    omni_buf_free(&q);
    omni_buf_printf(&b, "nan=%d\n", omni_buf_json_floats(&q, nan, 3));
    omni_buf_printf(&b, "nan_untouched=%d\n", q.len == 0);
    omni_buf_printf(&b, "importance=%lld",
                    (long long)omni_memory_remember(0, "{\"text\":\"x\",\"importance\":2}"));
    return omni_buf_result(&b);
}

OMNI_HANDLER(vectors_query, input) {
    (void)input;
    omni_buf b = {0};
    const float en1[] = {1, 0}, en2[] = {0.6f, 0.8f}, de1[] = {1, 0.1f}, q[] = {1, 0};
    omni_vectors_upsert("q", "en1", en1, 2, "{\"lang\":\"en\"}");
    omni_vectors_upsert("q", "en2", en2, 2, "{\"lang\":\"en\"}");
    omni_vectors_upsert("q", "de1", de1, 2, "{\"lang\":\"de\"}");
    show_line(&b, "en", omni_vectors_query("q", q, 2, 5, "{\"lang\":\"en\"}"));
    show_line(&b, "fr", omni_vectors_query("q", q, 2, 5, "{\"lang\":\"fr\"}"));
    show_line(&b, "all", omni_vectors_query("q", q, 2, 1, ""));
    show_line(&b, "bad", omni_vectors_query("q", q, 2, 1, "[1]"));
    return omni_buf_result(&b);
}

/* The JSON reader on the input: reports the shape of each top-level member. */
OMNI_HANDLER(json_probe, input) {
    omni_json doc;
    size_t at = 0;
    if (omni_json_parse(input.ptr, input.len, &doc, &at) != 0)
        return omni_error("invalid JSON input: syntax error at byte %zu", at);
    omni_buf b = {0};
    static const char *keys[] = {"s", "i", "f", "big", "neg", "b", "n", "a", "o", "missing"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        omni_json v;
        int found = omni_json_get(doc, keys[k], &v);
        if (found < 0) return omni_error("invalid JSON input: expected an object");
        int64_t n;
        size_t len = 0;
        char *s = omni_json_string(v, &len);
        omni_buf_printf(&b, "%s:%d/%d", keys[k], found, found ? (int)v.type : 0);
        if (found && omni_json_int(v, &n) == 0) omni_buf_printf(&b, "=%lld", (long long)n);
        if (s) {
            omni_buf_puts(&b, "=");
            omni_buf_json_string(&b, s, len);
        }
        omni_buf_puts(&b, " ");
        free(s);
    }
    return omni_buf_result(&b);
}

/* Whether the reader accepts the input as one JSON document, and the top-level type. */
OMNI_HANDLER(json_valid, input) {
    omni_json doc;
    size_t at = 0;
    if (omni_json_parse(input.ptr, input.len, &doc, &at) != 0)
        return omni_error("invalid at byte %zu", at);
    char text[16];
    int n = snprintf(text, sizeof text, "ok:%d", (int)doc.type);
    return omni_ok(text, (size_t)n);
}

/* Re-encodes a value with the reader's API only: iterate, decode strings, copy numbers. */
static void reencode(omni_buf *b, omni_json v) {
    omni_json_iter it = omni_json_iterate(v);
    omni_json key, item;
    int first = 1;
    switch (v.type) {
    case OMNI_JSON_STRING: {
        size_t len = 0;
        char *s = omni_json_string(v, &len);
        if (s) omni_buf_json_string(b, s, len);
        else omni_buf_puts(b, "\"<lone surrogate>\"");
        free(s);
        break;
    }
    case OMNI_JSON_ARRAY:
    case OMNI_JSON_OBJECT:
        omni_buf_puts(b, v.type == OMNI_JSON_ARRAY ? "[" : "{");
        while (omni_json_next(&it, &key, &item)) {
            if (!first) omni_buf_puts(b, ",");
            first = 0;
            if (v.type == OMNI_JSON_OBJECT) {
                reencode(b, key);
                omni_buf_puts(b, ":");
            }
            reencode(b, item);
        }
        omni_buf_puts(b, v.type == OMNI_JSON_ARRAY ? "]" : "}");
        break;
    default:
        omni_buf_append(b, v.ptr, v.len); /* null, bools and numbers verbatim */
    }
}

OMNI_HANDLER(json_reencode, input) {
    omni_json doc;
    size_t at = 0;
    if (omni_json_parse(input.ptr, input.len, &doc, &at) != 0)
        return omni_error("invalid at byte %zu", at);
    omni_buf b = {0};
    reencode(&b, doc);
    return omni_buf_result(&b);
}
