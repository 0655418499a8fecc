/* The counter example: `count` adds `by` (default 1) to a counter that starts at config
 * `start`; `reset` puts it back. The count lives in omnicore:kv (key "count", the distance
 * from `start`), so it survives a restart and every instance in the pool shares it:
 * omni_kv_incr is atomic in the host. */
#include <errno.h>

#include "omnicore.h"

#define KEY "count"

/* Config `start` (default 0). Returns 0, or -1 with *why set. */
static int read_start(int64_t *out, const char **why) {
    omni_data text = omni_config_get("start");
    *out = 0;
    if (text.status == OMNI_NOT_FOUND) return 0;
    if (text.status != OMNI_OK) {
        *why = "config 'start' could not be read";
        return -1;
    }
    omni_json value;
    int ok = omni_json_parse(text.ptr, text.len, &value, NULL) == 0 &&
             omni_json_int(value, out) == 0;
    omni_data_free(&text);
    if (!ok) {
        *why = "config 'start' must be an integer";
        return -1;
    }
    return 0;
}

static omni_result count_result(int64_t counter) {
    char text[40];
    int n = snprintf(text, sizeof text, "{\"count\":%lld}", (long long)counter);
    return omni_ok(text, (size_t)n);
}

OMNI_HANDLER(count, input) {
    omni_json doc, by_value;
    size_t error_at = 0;
    if (omni_json_parse(input.ptr, input.len, &doc, &error_at) != 0)
        return omni_error("invalid JSON input: syntax error at byte %zu", error_at);
    int found = omni_json_get(doc, "by", &by_value);
    if (found < 0) return omni_error("invalid input: expected an object");
    int64_t by = 1;
    if (found == 1 && by_value.type != OMNI_JSON_NULL && omni_json_int(by_value, &by) != 0)
        return omni_error("invalid input: by must be an integer in the 64-bit range");
    const char *why = NULL;
    int64_t start, moved, next;
    if (read_start(&start, &why) != 0) return omni_error("%s", why);
    int32_t status = omni_kv_incr(KEY, by, &moved);
    if (status == OMNI_INVALID)
        return omni_error("counter overflow: the result does not fit in 64 bits");
    if (status != 0) return omni_error("kv.incr failed with status %d", (int)status);
    if (__builtin_add_overflow(start, moved, &next)) {
        /* Take the step back so the stored count stays where it was (-INT64_MIN in two). */
        int64_t ignored;
        if (by == INT64_MIN) omni_kv_incr(KEY, INT64_MAX, &ignored), by = -1;
        omni_kv_incr(KEY, -by, &ignored);
        return omni_error("counter overflow: the result does not fit in 64 bits");
    }
    omni_logf(OMNI_LOG_DEBUG, "count += %lld -> %lld", (long long)by, (long long)next);
    return count_result(next);
}

/* Takes any input (it is ignored), so `reset` can be called with an empty body. */
OMNI_HANDLER(reset, input) {
    (void)input;
    const char *why = NULL;
    int64_t start;
    if (read_start(&start, &why) != 0) return omni_error("%s", why);
    int32_t status = omni_kv_delete(KEY);
    if (status < 0) return omni_error("kv.delete failed with status %d", (int)status);
    omni_logf(OMNI_LOG_INFO, "counter reset to %lld", (long long)start);
    return count_result(start);
}
