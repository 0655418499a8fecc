/* The greeter example: {"name": "Ada"} -> {"message": "Hello, Ada!"}. */
#include "omnicore.h"

OMNI_HANDLER(greet, input) {
    omni_json doc, name_value;
    size_t error_at = 0;
    if (omni_json_parse(input.ptr, input.len, &doc, &error_at) != 0)
        return omni_error("invalid JSON input: syntax error at byte %zu", error_at);
    int found = omni_json_get(doc, "name", &name_value);
    if (found < 0) return omni_error("invalid JSON input: expected an object");

    char *name = NULL;
    size_t name_len = 5;
    if (found == 0 || name_value.type == OMNI_JSON_NULL) {
        name = strdup("world");
    } else if (name_value.type != OMNI_JSON_STRING) {
        return omni_error("name must be a string");
    } else if ((name = omni_json_string(name_value, &name_len)) == NULL) {
        return omni_error("invalid JSON input: name has a lone surrogate escape");
    } else if (name_len == 0) {
        free(name);
        return omni_error("name must not be empty");
    }
    if (!name) return omni_error("out of memory");

    omni_data greeting = omni_config_get("greeting");
    const char *word = greeting.status == OMNI_OK ? greeting.ptr : "Hello";
    size_t word_len = greeting.status == OMNI_OK ? greeting.len : 5;

    omni_logf(OMNI_LOG_INFO, "greeting %.*s", (int)name_len, name);
    omni_buf out = {0};
    omni_buf_puts(&out, "{\"message\":");
    omni_buf message = {0};
    omni_buf_append(&message, word, word_len);
    omni_buf_append(&message, ", ", 2);
    omni_buf_append(&message, name, name_len);
    omni_buf_append(&message, "!", 1);
    omni_buf_json_string(&out, message.ptr ? message.ptr : "", message.len);
    omni_buf_puts(&out, "}");
    if (message.failed) out.failed = 1;

    omni_buf_free(&message);
    omni_data_free(&greeting);
    free(name);
    return omni_buf_result(&out);
}
