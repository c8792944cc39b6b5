/* The public URL is set once and never changes after (requests read it without a lock): a
 * second set is refused and leaves the first, at the same address. */
#include "api/api.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

Test(public_url, is_set_once_and_never_changes)
{
    cr_assert_str_eq(api_public_url(), "");
    cr_assert_eq(api_set_public_url("http://127.0.0.1:8080//"), 0);
    const char *first = api_public_url();
    cr_assert_str_eq(first, "http://127.0.0.1:8080");
    cr_assert_eq(api_set_public_url("http://127.0.0.1:9090"), -EALREADY);
    cr_assert_eq(api_public_url(), first);
    cr_assert_str_eq(api_public_url(), "http://127.0.0.1:8080");
}

Test(public_url, refuses_an_empty_or_too_long_url)
{
    char long_url[API_PUBLIC_URL_MAX + 8];
    memset(long_url, 'a', sizeof(long_url) - 1);
    long_url[sizeof(long_url) - 1] = '\0';
    cr_assert_eq(api_set_public_url(long_url), -EINVAL);
    cr_assert_eq(api_set_public_url("/"), -EINVAL);
    cr_assert_str_eq(api_public_url(), "");
}
