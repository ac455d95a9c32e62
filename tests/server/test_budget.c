/*
 * test_budget.c — the memory budget (server/budget.c): charges stop at the limit and leave
 * nothing behind when refused; a request's ticket collects what its thread charges and
 * gives it all back at the end; standing adjustments are never refused, and a charge of
 * nothing always passes; the default limit is 75 % of something plausible.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../server/budget.h"

static void test_limit(void **state)
{
    (void)state;
    budget_set_limit(1000);
    uint64_t base = budget_used();
    assert_int_equal(budget_charge(600), 0);
    assert_int_equal(budget_charge(500), -1); /* refused: nothing charged */
    assert_int_equal(budget_used(), base + 600);
    assert_int_equal(budget_charge(400 - base), 0);
    assert_int_equal(budget_charge(1), -1);
    budget_release(1000 - base);
    assert_int_equal(budget_used(), base);
    assert_int_equal(budget_charge(1001), -1); /* more than all of it */
}

static void test_ticket(void **state)
{
    (void)state;
    budget_set_limit(1000);
    uint64_t base = budget_used();
    budget_ticket t = {0};
    budget_request_enter(&t);
    assert_int_equal(budget_charge(300), 0);
    assert_int_equal(budget_charge(800), -1);
    budget_request_leave();
    assert_int_equal(budget_ticket_charge(&t, 200), 0);
    budget_ticket_adjust(&t, 50);
    assert_int_equal(t.held, 550);
    assert_int_equal(budget_used(), base + 550);
    budget_request_end(&t);
    assert_int_equal(t.held, 0);
    assert_int_equal(budget_used(), base);
}

static void test_standing(void **state)
{
    (void)state;
    budget_set_limit(100);
    budget_adjust(150); /* memory already allocated: past the limit */
    assert_int_equal(budget_charge(1), -1);
    assert_int_equal(budget_charge(0), 0);
    budget_adjust(-150);
    assert_int_equal(budget_charge(1), 0);
    budget_release(1);
    assert_true(budget_default_limit() > ((uint64_t)64 << 20));
    budget_set_limit(0); /* no limit */
    assert_int_equal(budget_charge((uint64_t)1 << 40), 0);
    budget_release((uint64_t)1 << 40);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_ticket),
        cmocka_unit_test(test_standing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
