/* `omnicore test plugins/stock/c`: the query and its parameter, against scripted rows. */
#include "omnicore_test.h"

static const char SELECT[] = "SELECT sku, name, qty, price FROM stock WHERE sku = ?";
static const char WIDGET[] =
    "{\"columns\":[{\"name\":\"sku\",\"type\":\"varchar\"},{\"name\":\"name\",\"type\":\"varchar\"},"
    "{\"name\":\"qty\",\"type\":\"int\"},{\"name\":\"price\",\"type\":\"decimal\"}],"
    "\"rows\":[[\"A-1\",\"Widget\",12,{\"$decimal\":\"2.50\"}]]}";

/* inventory is a MySQL/MariaDB connector, as the operator's connectors.inventory.kind says:
 * the test host judges its statements (MySQL's `?`) by MariaDB's grammar, as the host would. */
static void mariadb(void) { OMNI_EXPECT(omni_test_sql_kind("inventory", "mysql") == 0); }

OMNI_TEST(check_returns_the_row_and_passes_the_sku_as_a_parameter) {
    mariadb();
    omni_test_sql_answer(SELECT, WIDGET);
    omni_test_result r = omni_test_call(check, "{\"sku\":\"A-1\"}");
    OMNI_EXPECT(!r.is_error);
    OMNI_EXPECT_STR(r.output, WIDGET);
    OMNI_EXPECT_STR(omni_test_sql_connector(0), "inventory");
    OMNI_EXPECT_STR(omni_test_sql_request(0),
                    "{\"sql\":\"SELECT sku, name, qty, price FROM stock WHERE sku = ?\","
                    "\"params\":[\"A-1\"]}");
}

OMNI_TEST(an_unknown_sku_is_an_error) {
    mariadb();
    omni_test_sql_answer(SELECT, "{\"columns\":[],\"rows\":[]}");
    omni_test_result r = omni_test_call(check, "{\"sku\":\"Z-9\"}");
    OMNI_EXPECT(r.is_error);
    OMNI_EXPECT_STR(r.output, "no such sku: Z-9");
}

OMNI_TEST(the_hosts_refusal_is_passed_on) {
    mariadb();
    omni_test_sql_answer(SELECT, "UNAVAILABLE: connector inventory: connection refused");
    omni_test_result r = omni_test_call(check, "{\"sku\":\"A-1\"}");
    OMNI_EXPECT(r.is_error);
    OMNI_EXPECT_STR(r.output, "UNAVAILABLE: connector inventory: connection refused");
}
