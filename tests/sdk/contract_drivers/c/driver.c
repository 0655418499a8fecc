/* The C SDK's test host through the contract's requests (tests/sdk/test_contract_fakes.py,
 * which writes tests/contract.c beside this file): a redis request or an SQL query through the
 * SDK as a plugin makes it, its outcome printed as "CONTRACT ok <JSON>" or "CONTRACT error
 * <text>". */
#include <stdio.h>
#include "omnicore.h"

static omni_result report(omni_data d) {
    printf("CONTRACT %s %s\n", d.status == OMNI_OK ? "ok" : "error", d.ptr ? d.ptr : "");
    omni_data_free(&d);
    return omni_ok_str("");
}

/* {"cmd": ..., "args": ...}: the command, its args passed on as the plugin wrote them. */
OMNI_HANDLER(redis, input) {
    omni_json doc, cmd, args;
    char *name = NULL, *list = NULL;
    if (omni_json_parse(input.ptr, input.len, &doc, NULL) != 0 ||
        omni_json_get(doc, "cmd", &cmd) != 1 || !(name = omni_json_string(cmd, NULL)))
        return omni_error("not a request");
    if (omni_json_get(doc, "args", &args) == 1) {
        list = (char *)calloc(args.len + 1, 1);
        memcpy(list, args.ptr, args.len);
    }
    omni_result r = report(omni_redis_command("cache", name, list));
    free(name);
    free(list);
    return r;
}

OMNI_HANDLER(query, input) {
    (void)input;
    return report(omni_sql_query("db", "SELECT", "[]"));
}
