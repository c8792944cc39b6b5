/* Tests for strv: growth from NULL, "NAME=value" entries, NULL values left unset, the array kept
 * NULL-terminated after every add, copies owned by the array, strv_free(NULL).
 */
#include "base/strv.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(strv, .timeout = 10);

Test(strv, builds_an_environment)
{
    char **env = NULL;
    size_t nr = 0;
    char home[] = "/home/x";
    cr_assert_eq(strv_add_env(&env, &nr, "PATH", "/usr/bin:/bin"), 0);
    cr_assert_not_null(env);
    cr_assert_eq(nr, 1);
    cr_assert_str_eq(env[0], "PATH=/usr/bin:/bin");
    cr_assert_null(env[1]);
    cr_assert_eq(strv_add_env(&env, &nr, "HOME", home), 0);
    home[1] = 'X'; /* the array holds a copy */
    cr_assert_eq(strv_add_env(&env, &nr, "UNSET", NULL), 0);
    cr_assert_eq(strv_add_env(&env, &nr, "EMPTY", ""), 0);
    cr_assert_eq(strv_add(&env, &nr, "--flag"), 0);
    cr_assert_eq(nr, 4);
    cr_assert_str_eq(env[1], "HOME=/home/x");
    cr_assert_str_eq(env[2], "EMPTY=");
    cr_assert_str_eq(env[3], "--flag");
    cr_assert_null(env[4]);
    strv_free(env);
    strv_free(NULL);
}

Test(strv, grows_past_any_small_size)
{
    char **v = NULL;
    size_t nr = 0;
    char name[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "V%d", i);
        cr_assert_eq(strv_add_env(&v, &nr, name, "1"), 0);
        cr_assert_null(v[nr]);
    }
    cr_assert_eq(nr, 1000);
    cr_assert_str_eq(v[999], "V999=1");
    size_t count = 0;
    while (v[count])
        count++;
    cr_assert_eq(count, nr);
    strv_free(v);
}
