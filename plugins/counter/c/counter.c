/* The counter example: `count` adds `by` (default 1) to a per-instance counter that starts at
 * config `start`; `reset` puts it back. State lives in the instance and is lost when the host
 * replaces it (durable counters belong in omnicore:kv). */
#include <errno.h>

#include "omnicore.h"

static int64_t counter;
static int counter_ready;

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

static omni_result count_result(void) {
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
    if (!counter_ready) {
        const char *why = NULL;
        if (read_start(&counter, &why) != 0) return omni_error("%s", why);
        counter_ready = 1;
    }
    int64_t next;
    if (__builtin_add_overflow(counter, by, &next))
        return omni_error("counter overflow: the result does not fit in 64 bits");
    counter = next;
    omni_logf(OMNI_LOG_DEBUG, "count += %lld -> %lld", (long long)by, (long long)counter);
    return count_result();
}

/* Takes any input (it is ignored), so `reset` can be called with an empty body. */
OMNI_HANDLER(reset, input) {
    (void)input;
    const char *why = NULL;
    int64_t start;
    if (read_start(&start, &why) != 0) return omni_error("%s", why);
    counter = start;
    counter_ready = 1;
    omni_logf(OMNI_LOG_INFO, "counter reset to %lld", (long long)counter);
    return count_result();
}
