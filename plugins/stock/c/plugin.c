/* The stock example on MySQL/MariaDB: reads the `stock` table (plugins/stock/schema.sql) of
 * the database behind the operator's `inventory` connector (omnicore:sql). The plugin never
 * sees the server's address or password; the statement is a constant and the SKU travels as
 * a parameter (MySQL's `?`), so no input can change what the SQL does.
 *
 * {"sku": "A-1"} -> the host's rows as they come:
 *   {"columns": [{"name": "sku", ...}, ...], "rows": [["A-1", "Widget", 12, {"$decimal": "2.50"}]]}
 */
#include "omnicore.h"

#define CONNECTOR "inventory"
static const char SELECT[] = "SELECT sku, name, qty, price FROM stock WHERE sku = ?";

OMNI_HANDLER(check, input) {
    omni_json doc, sku, rows, first;
    if (omni_json_parse(input.ptr, input.len, &doc, NULL) != 0 ||
        omni_json_get(doc, "sku", &sku) != 1 || sku.type != OMNI_JSON_STRING)
        return omni_error("sku must be a string");
    omni_buf params = {0};
    omni_buf_puts(&params, "[");
    omni_buf_append(&params, sku.ptr, sku.len); /* the JSON string as it came: still JSON */
    omni_buf_puts(&params, "]");
    omni_data result = omni_sql_query(CONNECTOR, SELECT, params.ptr);
    omni_buf_free(&params);
    if (result.status != OMNI_OK) {
        /* UNAVAILABLE, DENIED, ...: the host's one line, never a password or an address */
        omni_result r = omni_error("%s", result.ptr ? result.ptr : "the query failed");
        omni_data_free(&result);
        return r;
    }
    omni_json_iter it;
    omni_json key;
    int found = omni_json_parse(result.ptr, result.len, &doc, NULL) == 0 &&
                omni_json_get(doc, "rows", &rows) == 1 &&
                (it = omni_json_iterate(rows), omni_json_next(&it, &key, &first));
    if (!found) {
        char *name = omni_json_string(sku, NULL);
        omni_result r = omni_error("no such sku: %s", name ? name : "?");
        free(name);
        omni_data_free(&result);
        return r;
    }
    omni_logf(OMNI_LOG_INFO, "checked %.*s", (int)sku.len, sku.ptr);
    return omni_ok_owned(result.ptr, result.len);
}
