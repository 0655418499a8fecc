/* Handlers over sql, redis and kv for omnicore_test.h's fakes (tests/sdk/test_c_unit.py). */
#include "omnicore.h"

/* {"sku": "..."} -> the stock query's rows; the restock is a transaction, committed. */
OMNI_HANDLER(stock, input) {
    omni_json doc, sku;
    if (omni_json_parse(input.ptr, input.len, &doc, NULL) != 0 ||
        omni_json_get(doc, "sku", &sku) != 1 || sku.type != OMNI_JSON_STRING)
        return omni_error("sku must be a string");
    omni_buf params = {0};
    omni_buf_puts(&params, "[");
    omni_buf_append(&params, sku.ptr, sku.len);
    omni_buf_puts(&params, "]");
    omni_data rows = omni_sql_query("orders", "SELECT qty FROM stock WHERE sku = $1", params.ptr);
    if (rows.status != OMNI_OK) {
        omni_result r = omni_error("query failed (%d): %s", rows.status, rows.ptr ? rows.ptr : "");
        omni_buf_free(&params);
        omni_data_free(&rows);
        return r;
    }
    int64_t tx = omni_sql_begin("orders");
    omni_data done = omni_sql_execute_tx("orders", tx, "UPDATE stock SET checked = now() WHERE sku = $1",
                                         params.ptr);
    if (done.status == OMNI_OK) omni_sql_commit(tx); else omni_sql_rollback(tx);
    omni_data_free(&done);
    omni_buf_free(&params);
    omni_kv_set("last", sku.ptr, sku.len);
    return omni_ok_owned(rows.ptr, rows.len);
}

/* Counts a hit in Redis (the counter expires after a minute): {"hits": n}. */
OMNI_HANDLER(hit, input) {
    (void)input;
    int64_t hits = 0;
    int32_t status = omni_redis_incrby("cache", "hits", 1, &hits);
    if (status != OMNI_OK) return omni_error("redis failed: %d", status);
    omni_data ttl = omni_redis_command("cache", "EXPIRE", "[\"hits\",60]");
    omni_data_free(&ttl);
    omni_logf(OMNI_LOG_INFO, "hit %lld", (long long)hits);
    omni_buf out = {0};
    omni_buf_printf(&out, "{\"hits\":%lld}", (long long)hits);
    return omni_buf_result(&out);
}

/* GET `input` (a URL): "status body". */
OMNI_HANDLER(fetch, input) {
    omni_buf req = {0};
    omni_buf_puts(&req, "{\"method\":\"GET\",\"url\":");
    omni_buf_json_string(&req, (const char *)input.ptr, input.len);
    omni_buf_puts(&req, "}");
    omni_data d = omni_http_request(req.ptr, "", 0);
    omni_buf_free(&req);
    omni_http_response resp;
    omni_result r = d.status != OMNI_OK ? omni_error("%d %s", (int)d.status, d.ptr ? d.ptr : "")
                    : omni_http_parse(&d, &resp) != 0 ? omni_error("not a response")
                    : omni_ok_str("");
    if (!r.is_error) {
        omni_buf out = {0};
        omni_buf_printf(&out, "%d %.*s", resp.status, (int)resp.body_len, (const char *)resp.body);
        r = omni_buf_result(&out);
    }
    omni_data_free(&d);
    return r;
}

/* Stores two vectors and answers the one nearest to (1, 0). */
OMNI_HANDLER(nearest, input) {
    (void)input;
    static const float a[] = {1, 0}, b[] = {0, 1}, q[] = {0.9f, 0.1f};
    omni_vectors_upsert("docs", "a", a, 2, "{\"t\":1}");
    omni_vectors_upsert("docs", "b", b, 2, "");
    omni_data d = omni_vectors_search("docs", q, 2, 1);
    if (d.status != OMNI_OK) {
        omni_result r = omni_error("%d %s", (int)d.status, d.ptr ? d.ptr : "");
        omni_data_free(&d);
        return r;
    }
    return omni_ok_owned(d.ptr, d.len);
}
