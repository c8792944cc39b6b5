/* Tests for auth: the pure parsers (rights, scopes, roles), and secrets end to end on a store in
 * a temp data dir: create, check as API key / token / HTTP basic, revoke. Authorization of apps
 * and environments (auth_app_access, auth_env_rights) is left to the end-to-end tests.
 * Checks are plain functions, run in a few Test cases at the end: Criterion starts a process
 * per test (~50 ms each here) and the unit tests must stay fast.
 */
#include "auth/auth.h"

#include "base/util.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(auth, .timeout = 10);

/* ---- auth_rights_parse ---- */

static void assert_rights(const char *list, unsigned want)
{
    unsigned bits = 0xdead;
    const char *bad = NULL;
    int r = auth_rights_parse(list, &bits, &bad);
    cr_assert_eq(r, 0, "auth_rights_parse(\"%s\") = %d", list, r);
    cr_assert_eq(bits, want, "auth_rights_parse(\"%s\") = %#x, want %#x", list, bits, want);
}

/* Checks the list is rejected and *bad points `bad_at` characters into it. */
static void assert_rights_bad(const char *list, size_t bad_at)
{
    unsigned bits = 0xdead;
    const char *bad = NULL;
    int r = auth_rights_parse(list, &bits, &bad);
    cr_assert_eq(r, -EINVAL, "auth_rights_parse(\"%s\") = %d", list, r);
    cr_assert_eq(bits, 0xdead, "auth_rights_parse(\"%s\") wrote *out on error", list);
    cr_assert_not_null(bad);
    cr_assert_eq((size_t)(bad - list), bad_at, "auth_rights_parse(\"%s\"): bad at %td, want %zu",
                 list, bad - list, bad_at);
}

static void rights_each_name(void)
{
    assert_rights("api", RIGHT_API);
    assert_rights("transport", RIGHT_TRANSPORT);
    assert_rights("backups", RIGHT_BACKUPS);
    assert_rights("monitoring", RIGHT_MONITORING);
    assert_rights("alerts", RIGHT_ALERTS);
    assert_rights("permissions", RIGHT_PERMISSIONS);
}

static void rights_lists_any_case_any_order(void)
{
    assert_rights("api,transport", RIGHT_API | RIGHT_TRANSPORT);
    assert_rights("Transport,API", RIGHT_API | RIGHT_TRANSPORT);
    assert_rights("permissions,alerts,monitoring,backups,transport,api", RIGHT_ALL);
    assert_rights("API,api,Api", RIGHT_API);
}

static void rights_unknown_names(void)
{
    assert_rights_bad("", 0);
    assert_rights_bad("bogus", 0);
    assert_rights_bad("api,bogus", 4);
    assert_rights_bad("api,transport,apis", 14);
    assert_rights_bad("ap", 0);
    assert_rights_bad(" api", 0);
    assert_rights_bad("api ", 0);
    assert_rights_bad("api, transport", 4);
    assert_rights_bad("api;transport", 0);
    assert_rights_bad("all", 0);
}

static void rights_empty_items(void)
{
    assert_rights_bad(",api", 0);
    assert_rights_bad("api,,transport", 4);
    assert_rights_bad(",", 0);
}

/* BUG (reported, not fixed here): a trailing empty item is accepted ("api," parses as "api")
 * while a leading or inner one is rejected, and auth_scopes_valid rejects "a,". Enable when
 * auth_rights_parse rejects it. */
Test(auth, rights_trailing_comma_is_an_empty_item)
{
    assert_rights_bad("api,", 4);
}

static void rights_bad_is_optional(void)
{
    unsigned bits;
    cr_assert_eq(auth_rights_parse("nope", &bits, NULL), -EINVAL);
    cr_assert_eq(auth_rights_parse("api", &bits, NULL), 0);
    cr_assert_eq(bits, RIGHT_API);
}

/* ---- scopes ---- */

static void scope_has(void)
{
    cr_assert(auth_scope_has("a,b,c", "a"));
    cr_assert(auth_scope_has("a,b,c", "b"));
    cr_assert(auth_scope_has("a,b,c", "c"));
    cr_assert(auth_scope_has(AUTH_SCOPE_REPO_READ, AUTH_SCOPE_REPO_READ));
    cr_assert(auth_scope_has("x:y," AUTH_SCOPE_REPO_READ, AUTH_SCOPE_REPO_READ));
    cr_assert_not(auth_scope_has("a,b,c", "d"));
    cr_assert_not(auth_scope_has("", "a"));
    cr_assert_not(auth_scope_has("ab", "a"));
    cr_assert_not(auth_scope_has("a", "ab"));
    cr_assert_not(auth_scope_has("ba,ab", "a"));
    cr_assert_not(auth_scope_has("mx:modelrepository:repo:read:extra", AUTH_SCOPE_REPO_READ));
    cr_assert_not(auth_scope_has("mx:modelrepository:repo", AUTH_SCOPE_REPO_READ));
    cr_assert_not(auth_scope_has("MX:MODELREPOSITORY:REPO:READ", AUTH_SCOPE_REPO_READ));
}

static void scopes_valid(void)
{
    cr_assert(auth_scopes_valid(""));
    cr_assert(auth_scopes_valid("a"));
    cr_assert(auth_scopes_valid("a,b"));
    cr_assert(auth_scopes_valid(AUTH_SCOPE_REPO_READ));
    cr_assert(auth_scopes_valid("a-b_c.d:e,0-9"));
}

static void scopes_invalid(void)
{
    const char *bad[] = {",",  "a,", ",a",  "a,,b", "A",        "a b",    "a;b",
                         " a", "a ", "a\n", "a/b",  "\xc3\xa9", "a,b,c,", "a\tb"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(auth_scopes_valid(bad[i]), "'%s' accepted", bad[i]);
}

static void scopes_length_limit(void)
{
    char s[STORE_SCOPES_MAX + 2];
    memset(s, 'a', sizeof(s) - 1);
    s[STORE_SCOPES_MAX] = '\0';
    cr_assert(auth_scopes_valid(s));
    s[STORE_SCOPES_MAX] = 'a';
    s[STORE_SCOPES_MAX + 1] = '\0';
    cr_assert_not(auth_scopes_valid(s));
}

/* ---- roles ---- */

static void role_parse_any_case(void)
{
    enum store_role role;
    cr_assert_eq(auth_role_parse("viewer", &role), 0);
    cr_assert_eq(role, STORE_ROLE_VIEWER);
    cr_assert_eq(auth_role_parse("Developer", &role), 0);
    cr_assert_eq(role, STORE_ROLE_DEVELOPER);
    cr_assert_eq(auth_role_parse("ADMIN", &role), 0);
    cr_assert_eq(role, STORE_ROLE_ADMIN);
}

static void role_parse_rejects(void)
{
    const char *bad[] = {"", "none", "admins", "admin ", " admin", "view", "owner", "admin\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum store_role role = (enum store_role)77;
        cr_assert_eq(auth_role_parse(bad[i], &role), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert_eq((int)role, 77, "'%s' wrote *out on error", bad[i]);
    }
}

static void role_names_round_trip(void)
{
    enum store_role roles[] = {STORE_ROLE_VIEWER, STORE_ROLE_DEVELOPER, STORE_ROLE_ADMIN};
    for (size_t i = 0; i < 3; i++) {
        enum store_role back;
        cr_assert_eq(auth_role_parse(auth_role_name(roles[i]), &back), 0);
        cr_assert_eq(back, roles[i]);
    }
    cr_assert_str_eq(auth_role_name(STORE_ROLE_VIEWER), "viewer");
    cr_assert_str_eq(auth_role_name(STORE_ROLE_DEVELOPER), "developer");
    cr_assert_str_eq(auth_role_name(STORE_ROLE_ADMIN), "admin");
    cr_assert_str_eq(auth_role_name(STORE_ROLE_NONE), "none");
    cr_assert_str_eq(auth_role_name((enum store_role)42), "none");
}

/* ---- secrets on a real store ---- */

static char tmp[PATH_MAX];
static int64_t alice, bob;

static void store_setup(void)
{
    temp_dir(tmp, "auth");
    char *db = str("%s/slipway.db", tmp);
    cr_assert_eq(store_init(db), 0);
    free(db);
    cr_assert_eq(store_user_insert("alice@example.com", "Alice", false, &alice), 0);
    cr_assert_eq(store_user_insert("bob@example.com", "Bob", false, &bob), 0);
}

static void store_teardown(void)
{
    store_thread_release();
    fs_remove_tree(tmp);
}

TestSuite(secrets, .init = store_setup, .fini = store_teardown, .timeout = 10);

static char *new_secret(int64_t user, enum store_cred_kind kind, const char *scopes)
{
    char *s = NULL;
    int r = auth_secret_new(user, kind, scopes, &s);
    cr_assert_eq(r, 0, "auth_secret_new = %d", r);
    cr_assert_not_null(s);
    return s;
}

/* "user:password" as an HTTP basic credential (caller frees). */
static char *basic(const char *user, const char *password)
{
    char plain[1024];
    int n = snprintf(plain, sizeof(plain), "%s:%s", user, password);
    cr_assert(n >= 0 && (size_t)n < sizeof(plain));
    char *out = malloc(4 * (((size_t)n + 2) / 3) + 1);
    cr_assert_not_null(out);
    sodium_bin2base64(out, 4 * (((size_t)n + 2) / 3) + 1, (const unsigned char *)plain, (size_t)n,
                      sodium_base64_VARIANT_ORIGINAL);
    return out;
}

static char *basic_raw(const void *plain, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    cr_assert_not_null(out);
    sodium_bin2base64(out, 4 * ((n + 2) / 3) + 1, plain, n, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void apikey_shape_and_check(void)
{
    char *key = new_secret(alice, STORE_CRED_APIKEY, NULL);
    cr_assert_eq(strlen(key), 43); /* 256 bits, unpadded base64url */
    cr_assert_eq(strspn(key, B64URL), 43);
    struct auth_principal p;
    memset(&p, 0, sizeof(p));
    cr_assert_eq(auth_check_apikey("alice@example.com", key, &p), 0);
    cr_assert_eq(p.user.id, alice);
    cr_assert_str_eq(p.user.email, "alice@example.com");
    cr_assert_str_eq(p.user.name, "Alice");
    cr_assert_eq(p.via, STORE_CRED_APIKEY);
    cr_assert(p.user.active);
    cr_assert_eq(auth_check_apikey("ALICE@Example.COM", key, &p), 0); /* emails: any case */
    free(key);
}

static void secrets_are_distinct(void)
{
    char *a = new_secret(alice, STORE_CRED_APIKEY, NULL);
    char *b = new_secret(alice, STORE_CRED_APIKEY, NULL);
    cr_assert_str_neq(a, b);
    cr_assert_neq(memcmp(a, b, AUTH_ID_LEN), 0);
    struct auth_principal p;
    cr_assert_eq(auth_check_apikey("alice@example.com", a, &p), 0);
    cr_assert_eq(auth_check_apikey("alice@example.com", b, &p), 0);
    free(a);
    free(b);
}

static void apikey_rejections(void)
{
    char *key = new_secret(alice, STORE_CRED_APIKEY, NULL);
    struct auth_principal p;
    cr_assert_eq(auth_check_apikey("bob@example.com", key, &p), -EACCES);
    cr_assert_eq(auth_check_apikey("nobody@example.com", key, &p), -EACCES);
    cr_assert_eq(auth_check_apikey("", key, &p), -EACCES);
    cr_assert_eq(auth_check_apikey(NULL, key, &p), -EACCES);
    cr_assert_eq(auth_check_apikey("alice@example.com", NULL, &p), -EACCES);
    cr_assert_eq(auth_check_apikey("alice@example.com", "", &p), -EACCES);

    /* same public id, wrong rest */
    char *wrong = strdup(key);
    wrong[42] = wrong[42] == 'A' ? 'B' : 'A';
    cr_assert_eq(auth_check_apikey("alice@example.com", wrong, &p), -EACCES);
    /* the id alone, a prefix, an extension */
    wrong[AUTH_ID_LEN] = '\0';
    cr_assert_eq(auth_check_apikey("alice@example.com", wrong, &p), -EACCES);
    memcpy(wrong, key, 42);
    wrong[42] = '\0';
    cr_assert_eq(auth_check_apikey("alice@example.com", wrong, &p), -EACCES);
    char longer[64];
    snprintf(longer, sizeof(longer), "%sx", key);
    cr_assert_eq(auth_check_apikey("alice@example.com", longer, &p), -EACCES);
    free(wrong);
    free(key);
}

static void oversized_secret_rejected(void)
{
    char big[4096];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct auth_principal p;
    cr_assert_eq(auth_check_apikey("alice@example.com", big, &p), -EACCES);
    cr_assert_eq(auth_check_token(big, &p), -EACCES);
}

static void token_shape_scopes_and_check(void)
{
    char *tok = new_secret(alice, STORE_CRED_TOKEN, AUTH_SCOPE_REPO_READ ",x:y");
    cr_assert_eq(strncmp(tok, "slw_", 4), 0);
    cr_assert_eq(strlen(tok), 4 + 43);
    cr_assert_eq(strspn(tok + 4, B64URL), 43);
    struct auth_principal p;
    memset(&p, 0, sizeof(p));
    cr_assert_eq(auth_check_token(tok, &p), 0);
    cr_assert_eq(p.user.id, alice);
    cr_assert_eq(p.via, STORE_CRED_TOKEN);
    cr_assert_str_eq(p.scopes, AUTH_SCOPE_REPO_READ ",x:y");
    cr_assert(auth_scope_has(p.scopes, AUTH_SCOPE_REPO_READ));
    free(tok);
}

static void token_rejections(void)
{
    char *tok = new_secret(alice, STORE_CRED_TOKEN, "");
    struct auth_principal p;
    cr_assert_eq(auth_check_token(NULL, &p), -EACCES);
    cr_assert_eq(auth_check_token("", &p), -EACCES);
    cr_assert_eq(auth_check_token("slw_", &p), -EACCES);
    cr_assert_eq(auth_check_token(tok + 4, &p), -EACCES); /* without its prefix */
    char *wrong = strdup(tok);
    wrong[46] = wrong[46] == 'A' ? 'B' : 'A';
    cr_assert_eq(auth_check_token(wrong, &p), -EACCES);
    free(wrong);
    free(tok);
}

static void kinds_do_not_mix(void)
{
    char *key = new_secret(alice, STORE_CRED_APIKEY, NULL);
    char *tok = new_secret(alice, STORE_CRED_TOKEN, AUTH_SCOPE_REPO_READ);
    struct auth_principal p;
    char as_token[64];
    snprintf(as_token, sizeof(as_token), "slw_%s", key);
    cr_assert_eq(auth_check_token(key, &p), -EACCES);
    cr_assert_eq(auth_check_token(as_token, &p), -EACCES);
    cr_assert_eq(auth_check_apikey("alice@example.com", tok, &p), -EACCES);
    cr_assert_eq(auth_check_apikey("alice@example.com", tok + 4, &p), -EACCES);
    free(key);
    free(tok);
}

static void apikey_has_no_scopes(void)
{
    char *key = new_secret(alice, STORE_CRED_APIKEY, AUTH_SCOPE_REPO_READ);
    struct auth_principal p;
    memset(&p, 0x55, sizeof(p));
    cr_assert_eq(auth_check_apikey("alice@example.com", key, &p), 0);
    cr_assert_str_eq(p.scopes, "");
    free(key);
}

static void basic_with_apikey_and_token(void)
{
    char *key = new_secret(alice, STORE_CRED_APIKEY, NULL);
    char *tok = new_secret(bob, STORE_CRED_TOKEN, AUTH_SCOPE_REPO_READ);
    struct auth_principal p;

    char *b = basic("alice@example.com", key);
    cr_assert_eq(auth_check_basic(b, &p), 0);
    cr_assert_eq(p.user.id, alice);
    cr_assert_eq(p.via, STORE_CRED_APIKEY);
    free(b);

    b = basic("bob@example.com", tok);
    cr_assert_eq(auth_check_basic(b, &p), 0);
    cr_assert_eq(p.user.id, bob);
    cr_assert_eq(p.via, STORE_CRED_TOKEN);
    free(b);

    b = basic("", tok); /* a token names its user: the user part may be empty */
    cr_assert_eq(auth_check_basic(b, &p), 0);
    cr_assert_eq(p.user.id, bob);
    free(b);

    b = basic("BOB@EXAMPLE.COM", tok);
    cr_assert_eq(auth_check_basic(b, &p), 0);
    free(b);
    free(key);
    free(tok);
}

static void basic_rejections(void)
{
    char *key = new_secret(alice, STORE_CRED_APIKEY, NULL);
    char *tok = new_secret(bob, STORE_CRED_TOKEN, "");
    struct auth_principal p;
    char *b;

    b = basic("bob@example.com", key); /* alice's key, bob's name */
    cr_assert_eq(auth_check_basic(b, &p), -EACCES);
    free(b);
    b = basic("alice@example.com", tok); /* bob's token, alice's name */
    cr_assert_eq(auth_check_basic(b, &p), -EACCES);
    free(b);
    b = basic("", key); /* an API key needs its user */
    cr_assert_eq(auth_check_basic(b, &p), -EACCES);
    free(b);
    b = basic("alice@example.com", "wrong");
    cr_assert_eq(auth_check_basic(b, &p), -EACCES);
    free(b);
    b = basic_raw(key, strlen(key)); /* no colon */
    cr_assert_eq(auth_check_basic(b, &p), -EACCES);
    free(b);

    char with_nul[128];
    int n = snprintf(with_nul, sizeof(with_nul), "alice@example.com\1:%s", key);
    with_nul[17] = '\0'; /* "alice@example.com\0:key" */
    b = basic_raw(with_nul, (size_t)n);
    cr_assert_eq(auth_check_basic(b, &p), -EACCES);
    free(b);

    cr_assert_eq(auth_check_basic("", &p), -EACCES);
    cr_assert_eq(auth_check_basic("!!!!", &p), -EACCES);
    cr_assert_eq(auth_check_basic("Og==", &p), -EACCES); /* ":" */

    char huge[2000];
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    cr_assert_eq(auth_check_basic(huge, &p), -EACCES);
    free(key);
    free(tok);
}

static void revoke_apikey_by_id(void)
{
    char *key = new_secret(alice, STORE_CRED_APIKEY, NULL);
    char id[AUTH_ID_LEN + 1];
    memcpy(id, key, AUTH_ID_LEN);
    id[AUTH_ID_LEN] = '\0';
    struct auth_principal p;
    cr_assert_eq(auth_secret_revoke(bob, STORE_CRED_APIKEY, id), -ENOENT); /* not bob's */
    cr_assert_eq(auth_check_apikey("alice@example.com", key, &p), 0);
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_TOKEN, id), -ENOENT); /* not a token */
    cr_assert_eq(auth_check_apikey("alice@example.com", key, &p), 0);

    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_APIKEY, id), 0);
    cr_assert_eq(auth_check_apikey("alice@example.com", key, &p), -EACCES);
    char *b = basic("alice@example.com", key);
    cr_assert_eq(auth_check_basic(b, &p), -EACCES);
    free(b);
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_APIKEY, id), -ENOENT); /* already */
    free(key);
}

static void revoke_apikey_by_whole_secret_keeps_others(void)
{
    char *a = new_secret(alice, STORE_CRED_APIKEY, NULL);
    char *b = new_secret(alice, STORE_CRED_APIKEY, NULL);
    struct auth_principal p;
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_APIKEY, a), 0);
    cr_assert_eq(auth_check_apikey("alice@example.com", a, &p), -EACCES);
    cr_assert_eq(auth_check_apikey("alice@example.com", b, &p), 0);
    free(a);
    free(b);
}

static void revoke_token_by_id_or_secret(void)
{
    char *t1 = new_secret(alice, STORE_CRED_TOKEN, "");
    char *t2 = new_secret(alice, STORE_CRED_TOKEN, "");
    struct auth_principal p;
    char id[AUTH_ID_LEN + 1];
    memcpy(id, t1 + 4, AUTH_ID_LEN); /* the id follows "slw_" */
    id[AUTH_ID_LEN] = '\0';
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_APIKEY, id), -ENOENT);
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_TOKEN, id), 0);
    cr_assert_eq(auth_check_token(t1, &p), -EACCES);
    cr_assert_eq(auth_check_token(t2, &p), 0);
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_TOKEN, t2), 0);
    cr_assert_eq(auth_check_token(t2, &p), -EACCES);
    free(t1);
    free(t2);
}

static void revoke_unknown_or_short_ids(void)
{
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_APIKEY, ""), -ENOENT);
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_APIKEY, "short"), -ENOENT);
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_APIKEY, "AAAAAAAAAAAA"), -ENOENT);
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_TOKEN, "slw_"), -ENOENT);
    cr_assert_eq(auth_secret_revoke(alice, STORE_CRED_TOKEN, "slw_AAAAAAAAAAAA"), -ENOENT);
}

static void unknown_user_cannot_get_a_secret(void)
{
    char *s = NULL;
    int r = auth_secret_new(9999, STORE_CRED_APIKEY, NULL, &s);
    cr_assert_neq(r, 0, "a credential for a user that does not exist");
    cr_assert_null(s);
}

Test(auth, rights_parse)
{
    rights_each_name();
    rights_lists_any_case_any_order();
    rights_unknown_names();
    rights_empty_items();
    rights_bad_is_optional();
}

Test(auth, scopes)
{
    scope_has();
    scopes_valid();
    scopes_invalid();
    scopes_length_limit();
}

Test(auth, roles)
{
    role_parse_any_case();
    role_parse_rejects();
    role_names_round_trip();
}

Test(secrets, apikeys)
{
    apikey_shape_and_check();
    secrets_are_distinct();
    apikey_rejections();
    oversized_secret_rejected();
    apikey_has_no_scopes();
}

Test(secrets, tokens)
{
    token_shape_scopes_and_check();
    token_rejections();
    kinds_do_not_mix();
}

Test(secrets, basic)
{
    basic_with_apikey_and_token();
    basic_rejections();
}

Test(secrets, revoke)
{
    revoke_apikey_by_id();
    revoke_apikey_by_whole_secret_keeps_others();
    revoke_token_by_id_or_secret();
    revoke_unknown_or_short_ids();
    unknown_user_cannot_get_a_secret();
}
