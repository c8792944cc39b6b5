/* libFuzzer driver for credentials from the network: crypto_base64_decode and
 * crypto_base64url_decode into exact-size output buffers of a fuzzer-chosen capacity (ASan catches
 * a write past `cap`), with round-trip checks; then auth_check_basic on the same text against a
 * store in a temp data dir holding one user, an API key and a token.
 * The first input byte selects the capacity; the rest is the encoded text.
 */
#include "auth/auth.h"
#include "base/crypto.h"
#include "base/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT 2048

static char data_dir[64];

static void cleanup(void)
{
    if (data_dir[0])
        fs_remove_tree(data_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(data_dir, sizeof(data_dir), "/tmp/slipway-fuzz-XXXXXX");
    char db[sizeof(data_dir) + 16];
    if (!mkdtemp(data_dir))
        abort();
    snprintf(db, sizeof(db), "%s/slipway.db", data_dir);
    if (store_init(db))
        abort();
    atexit(cleanup);
    int64_t id;
    char *key = NULL, *token = NULL;
    if (store_user_insert("fuzz@example.com", "Fuzz", false, &id) ||
        auth_secret_new(id, STORE_CRED_APIKEY, NULL, &key) ||
        auth_secret_new(id, STORE_CRED_TOKEN, AUTH_SCOPE_REPO_READ, &token))
        abort();
    free(key);
    free(token);
    return 0;
}

/* Decodes with the given decoder into exactly `cap` bytes and checks the result. */
static void check_decode(bool url, const char *in, size_t len, size_t cap)
{
    unsigned char *out = malloc(cap ? cap : 1);
    if (!out)
        return;
    long n =
        url ? crypto_base64url_decode(in, len, out, cap) : crypto_base64_decode(in, len, out, cap);
    if (n < -1 || (n >= 0 && (size_t)n > cap) || (n >= 0 && (size_t)n > len * 3 / 4))
        abort();
    if (n >= 0) {
        /* Whatever decoded must survive encode -> decode unchanged. */
        size_t enc_cap = 4 * (((size_t)n + 2) / 3) + 1;
        char *enc = malloc(enc_cap);
        unsigned char *back = malloc((size_t)n + 1);
        if (enc && back) {
            crypto_base64url(out, (size_t)n, enc);
            size_t enc_len = strlen(enc);
            if (enc_len >= enc_cap)
                abort();
            if (!url)
                for (size_t i = 0; i < enc_len; i++)
                    enc[i] = enc[i] == '-' ? '+' : enc[i] == '_' ? '/' : enc[i];
            long m = url ? crypto_base64url_decode(enc, enc_len, back, (size_t)n)
                         : crypto_base64_decode(enc, enc_len, back, (size_t)n);
            if (m != n || memcmp(back, out, (size_t)n) != 0)
                abort();
        }
        free(enc);
        free(back);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > MAX_INPUT)
        return 0;
    size_t len = size - 1;
    size_t caps[] = {data[0], len, len * 3 / 4, 0};
    /* Exact-size, not NUL-terminated: ASan flags any read past len. */
    char *in = malloc(len ? len : 1);
    if (!in)
        return 0;
    memcpy(in, data + 1, len);
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        check_decode(false, in, len, caps[i]);
        check_decode(true, in, len, caps[i]);
    }
    free(in);

    char *s = malloc(len + 1);
    if (!s)
        return 0;
    memcpy(s, data + 1, len);
    s[len] = '\0';
    struct auth_principal p;
    int r = auth_check_basic(s, &p);
    if (r != 0 && r != -EACCES)
        abort();
    free(s);
    return 0;
}
