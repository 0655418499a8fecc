/* Route-helper fixture (tests/sdk/test_route_helpers.py): every SDK's fixture answers the same. */
#include "omnicore_route.h"

/* Adds header `name` with `value`, or "-" when NULL, and frees `value`. */
static void header_or_dash(omni_response *res, const char *name, char *value) {
    omni_response_header(res, name, value ? value : "-");
    free(value);
}

/* 201, what the request carried in headers, and the request body echoed byte for byte. */
OMNI_ROUTE(echo, req) {
    omni_response res = omni_response_new(201);
    omni_response_header(&res, "content-type", "application/octet-stream");
    omni_response_header(&res, "x-method", req->method);
    omni_response_header(&res, "x-path", req->path);
    omni_response_header(&res, "x-query", req->query);
    header_or_dash(&res, "x-first", omni_request_query_param(req, "x", 0));
    omni_buf all = {0};
    for (size_t i = 0, n = omni_request_query_count(req, "x"); i < n; i++) {
        char *v = omni_request_query_param(req, "x", i);
        omni_buf_printf(&all, "%s%s", i ? "," : "", v ? v : "");
        free(v);
    }
    omni_response_header(&res, "x-all", all.ptr ? all.ptr : "");
    omni_buf_free(&all);
    header_or_dash(&res, "x-id", omni_request_param(req, "id"));
    header_or_dash(&res, "x-agent", omni_request_header(req, "User-Agent"));
    omni_response_header(&res, "x-route", req->route);
    omni_response_header(&res, "set-cookie", "a=1");
    omni_response_header(&res, "set-cookie", "b=2");
    omni_response_body(&res, req->body, req->body_len);
    return res;
}

OMNI_ROUTE(hello, req) {
    char *name = omni_request_param(req, "name");
    omni_buf text = {0};
    omni_buf_printf(&text, "hello %s", name ? name : "world");
    free(name);
    omni_response res = omni_response_text(200, text.ptr ? text.ptr : "");
    omni_buf_free(&text);
    return res;
}

OMNI_ROUTE(info, req) {
    omni_json body, n_value;
    int64_t n;
    if (omni_json_parse(req->body, req->body_len, &body, NULL) != 0 ||
        omni_json_get(body, "n", &n_value) != 1 || omni_json_int(n_value, &n) != 0)
        return omni_response_error("the body is not {\"n\": integer}");
    char *id = omni_request_param(req, "id");
    omni_buf json = {0};
    omni_buf_puts(&json, "{\"id\":");
    omni_buf_json_string(&json, id ? id : "", id ? strlen(id) : 0);
    omni_buf_printf(&json, ",\"n\":%lld}", (long long)n);
    free(id);
    omni_response res = omni_response_json(202, json.ptr ? json.ptr : "{}");
    omni_buf_free(&json);
    return res;
}

OMNI_ROUTE(fail, req) {
    (void)req;
    return omni_response_error("the database is down");
}
