/* libFuzzer driver for request bodies: api_parse_body on the raw bytes (an exact-size heap copy,
 * not NUL-terminated, so ASan catches any read past len), then the pure validators on the string
 * members the admin API reads. Checks the documented contracts and abort()s on a violation.
 */
#include "admin/admin.h"
#include "api/api_int.h"
#include "auth/auth.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT 65536

static const char *const keys[] = {"email", "name",   "AppId", "Name",
                                   "role",  "rights", "env",   "scopes"};

static void check_string(const char *v)
{
    size_t len = strlen(v);

    if (admin_app_id_valid(v)) {
        if (len < 2 || len > STORE_APPID_MAX ||
            strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != len)
            abort();
    }
    if (admin_email_valid(v)) {
        const char *at = strchr(v, '@');
        if (len > STORE_EMAIL_MAX || !at || strchr(at + 1, '@'))
            abort();
    }

    unsigned bits = 0xdead;
    const char *bad = NULL;
    int r = auth_rights_parse(v, &bits, &bad);
    if (r == 0) {
        if (bits & ~(unsigned)RIGHT_ALL || (len && !bits))
            abort();
    } else if (r != -EINVAL || bits != 0xdead || !bad || bad < v || bad > v + len) {
        abort();
    }

    if (auth_scopes_valid(v)) {
        if (len > STORE_SCOPES_MAX)
            abort();
    }
    (void)auth_scope_has(v, AUTH_SCOPE_REPO_READ);

    enum store_role role = STORE_ROLE_NONE;
    r = auth_role_parse(v, &role);
    if (r == 0) {
        if (role < STORE_ROLE_VIEWER || role > STORE_ROLE_ADMIN)
            abort();
        enum store_role back;
        if (auth_role_parse(auth_role_name(role), &back) || back != role)
            abort();
    } else if (r != -EINVAL || role != STORE_ROLE_NONE) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > MAX_INPUT)
        return 0;
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    char err[256];
    memset(err, 'X', sizeof(err));
    json_t *j = api_parse_body(body, size, err, sizeof(err));
    if (!j) {
        if (!memchr(err, '\0', sizeof(err)) || err[0] == '\0') /* a reason, as a C string */
            abort();
        free(body);
        return 0;
    }
    if (!json_is_object(j))
        abort();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = api_str(j, keys[i]);
        if (v)
            check_string(v);
    }
    json_decref(j);
    free(body);
    return 0;
}
