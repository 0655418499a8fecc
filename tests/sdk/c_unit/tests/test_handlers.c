#include "omnicore_test.h"

OMNI_TEST(stock_answers_the_scripted_rows) {
    omni_test_sql_answer("SELECT qty FROM stock WHERE sku = $1",
                         "{\"columns\":[{\"name\":\"qty\",\"type\":\"int4\"}],\"rows\":[[3]]}");
    omni_test_sql_answer("UPDATE stock SET checked = now() WHERE sku = $1", "{\"rows_affected\":1}");
    omni_test_result r = omni_test_call(stock, "{\"sku\":\"A-1\"}");
    OMNI_EXPECT(!r.is_error);
    OMNI_EXPECT_STR(r.output, "{\"columns\":[{\"name\":\"qty\",\"type\":\"int4\"}],\"rows\":[[3]]}");
    OMNI_EXPECT_INT(omni_test_sql_count(), 4);
    OMNI_EXPECT_STR(omni_test_sql_connector(0), "orders");
    OMNI_EXPECT_STR(omni_test_sql_request(0),
                    "{\"sql\":\"SELECT qty FROM stock WHERE sku = $1\",\"params\":[\"A-1\"]}");
    OMNI_EXPECT_STR(omni_test_sql_request(1), "BEGIN 1");
    OMNI_EXPECT_STR(omni_test_sql_request(3), "COMMIT 1");
    OMNI_EXPECT_STR(omni_test_kv_get("last"), "\"A-1\"");
}

OMNI_TEST(stock_reports_a_failed_query) {
    omni_test_sql_answer("SELECT qty FROM stock WHERE sku = $1",
                         "UNAVAILABLE: connector orders: connection refused");
    omni_test_result r = omni_test_call(stock, "{\"sku\":\"A-1\"}");
    OMNI_EXPECT(r.is_error);
    OMNI_EXPECT_STR(r.output, "query failed (-5): UNAVAILABLE: connector orders: connection refused");
}

OMNI_TEST(hit_counts_in_redis_with_an_expiry) {
    omni_test_redis_set("hits", "41");
    omni_test_result r = omni_test_call(hit, "");
    OMNI_EXPECT_STR(r.output, "{\"hits\":42}");
    OMNI_EXPECT_STR(omni_test_redis_get("hits"), "42");
    OMNI_EXPECT_INT(omni_test_redis_ttl("hits"), 60);
    OMNI_EXPECT_STR(omni_test_log_line(0), "hit 42");
}

OMNI_TEST(each_test_starts_from_an_empty_host) {
    OMNI_EXPECT(omni_test_redis_get("hits") == NULL);
    OMNI_EXPECT_INT(omni_test_sql_count(), 0);
    OMNI_EXPECT_INT(omni_test_log_count(), 0);
}

OMNI_TEST(a_statement_without_an_answer_is_unavailable) {
    omni_test_result r = omni_test_call(stock, "{\"sku\":\"A-1\"}");
    OMNI_EXPECT(r.is_error);  /* the host's own refusal, naming what the test did not script */
    OMNI_EXPECT_STR(r.output, "query failed (-5): UNAVAILABLE: the test gave no "
                              "omni_test_sql_answer for SELECT qty FROM stock WHERE sku = $1");
}

OMNI_TEST(http_answers_what_the_test_scripted) {
    omni_test_http_answer("https://api.example/x", 200, "hello");
    omni_test_result r = omni_test_call(fetch, "https://api.example/x");
    OMNI_EXPECT_STR(r.output, "200 hello");
    r = omni_test_call(fetch, "https://api.example/y");
    OMNI_EXPECT(r.is_error);
    OMNI_EXPECT_STR(r.output, "-5 UNAVAILABLE: https://api.example/y: the test gave no "
                              "omni_test_http_answer for it");
    omni_test_http_failure("https://api.example/x", "DENIED: not today");
    r = omni_test_call(fetch, "https://api.example/x");
    OMNI_EXPECT_STR(r.output, "-2 DENIED: not today");
}

OMNI_TEST(vectors_are_the_hosts) {
    omni_test_result r = omni_test_call(nearest, "");  /* the host's store, in memory */
    OMNI_EXPECT(!r.is_error);
    OMNI_EXPECT(strncmp(r.output, "[{\"id\":\"a\",\"score\":0.99", 23) == 0);
    OMNI_EXPECT(strstr(r.output, "\"metadata\":{\"t\":1}}]") != NULL);
}

/* Fails on purpose: tests/sdk/test_c_unit.py checks how a failure is reported. */
OMNI_TEST(a_failing_expectation) {
    omni_test_result r = omni_test_call(hit, "");
    OMNI_EXPECT_STR(r.output, "{\"hits\":2}");
}
