/* Tests for the multipart/form-data Content-Type check that guards libmicrohttpd's post
 * processor: what it accepts must be what the post processor reads as the boundary. (The
 * parsing itself needs a connection: tests/e2e/test_upload.py and fuzz/fuzz_multipart.c, which
 * runs a server in its process, drive it.)
 */
#include "http/multipart.h"

#include <criterion/criterion.h>
#include <string.h>

TestSuite(multipart, .timeout = 10);

static bool ok(const char *ct)
{
    char err[256] = "";
    bool r = http_multipart_content_type_ok(ct, err, sizeof(err));
    cr_assert(r || err[0], "no message for '%s'", ct ? ct : "(null)");
    return r;
}

Test(multipart, content_type)
{
    cr_assert(ok("multipart/form-data; boundary=abc"));
    cr_assert(ok("Multipart/Form-Data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"));
    cr_assert(ok("multipart/form-data;boundary=a'()+_,-./:=?"));
    cr_assert(ok("multipart/form-data; boundary=\"with space inside\""));
    cr_assert(ok("multipart/form-data; charset=utf-8; boundary=xy"));
    char b70[128] = "multipart/form-data; boundary=";
    memset(b70 + strlen(b70), 'b', 70);
    cr_assert(ok(b70));
    strcat(b70, "b"); /* 71 */
    cr_assert(!ok(b70));

    cr_assert(!ok(NULL));
    cr_assert(!ok(""));
    cr_assert(!ok("application/json"));
    cr_assert(!ok("application/x-www-form-urlencoded"));
    cr_assert(!ok("multipart/form-dataX; boundary=abc"));
    cr_assert(!ok("multipart/mixed; boundary=abc"));
    cr_assert(!ok("multipart/form-data"));
    cr_assert(!ok("multipart/form-data; Boundary=abc")); /* libmicrohttpd would not find it */
    cr_assert(!ok("multipart/form-data; boundary="));
    cr_assert(!ok("multipart/form-data; boundary=\""));   /* CVE-2023-27371 */
    cr_assert(!ok("multipart/form-data; boundary=\"\"")); /* empty when unquoted */
    /* libmicrohttpd refuses a boundary value of one character (its post processor is not made:
     * the request was answered 500 "out of memory"); quoted, it is fine */
    cr_assert(!ok("multipart/form-data; boundary=x"));
    cr_assert(ok("multipart/form-data; boundary=\"x\""));
    cr_assert(ok("multipart/form-data; boundary=xy"));
    cr_assert(!ok("multipart/form-data; boundary=\"abc"));
    cr_assert(!ok("multipart/form-data; boundary=abc; charset=utf-8"));
    cr_assert(!ok("multipart/form-data; boundary=a b"));
    cr_assert(!ok("multipart/form-data; boundary=\"ends in space \""));
    cr_assert(!ok("multipart/form-data; boundary=a\x01"));
}
