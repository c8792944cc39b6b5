/* crypto — thin, checked wrappers over libsodium and (for SHA-256) OpenSSL's libcrypto; see
 * crypto.h. */
#include "base/crypto.h"

#include "base/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>
#include "base/banned.h"

int crypto_init(void)
{
    return sodium_init() < 0 ? -EIO : 0;
}

int crypto_random(void *buf, size_t n)
{
    if (crypto_init())
        return -EIO;
    randombytes_buf(buf, n);
    return 0;
}

/* --- SHA-256 (OpenSSL) --- */

struct crypto_sha256_ctx {
    EVP_MD_CTX *md;
    bool failed;
};

/* The digest is fetched once: an implicit fetch on every EVP_DigestInit_ex2 (EVP_sha256())
 * takes a lock and a look-up, per file of a package. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

static bool sha256_start(struct crypto_sha256_ctx *ctx)
{
    return EVP_DigestInit_ex2(ctx->md, sha256_md, NULL) == 1;
}

struct crypto_sha256_ctx *crypto_sha256_new(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    if (!sha256_md)
        return NULL;
    struct crypto_sha256_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx || !(ctx->md = EVP_MD_CTX_new()) || !sha256_start(ctx)) {
        crypto_sha256_free(ctx);
        return NULL;
    }
    return ctx;
}

void crypto_sha256_update(struct crypto_sha256_ctx *ctx, const void *data, size_t len)
{
    if (!ctx->failed && len && EVP_DigestUpdate(ctx->md, data, len) != 1)
        ctx->failed = true;
}

int crypto_sha256_final(struct crypto_sha256_ctx *ctx, unsigned char out[CRYPTO_SHA256_LEN])
{
    unsigned int n = 0;
    bool ok = !ctx->failed && EVP_DigestFinal_ex(ctx->md, out, &n) == 1 && n == CRYPTO_SHA256_LEN;
    if (!ok)
        memset(out, 0, CRYPTO_SHA256_LEN);
    ctx->failed = !sha256_start(ctx);
    return ok ? 0 : -EIO;
}

void crypto_sha256_free(struct crypto_sha256_ctx *ctx)
{
    if (!ctx)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN])
{
    crypto_hash_sha256(out, data, len);
}

void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX])
{
    unsigned char md[CRYPTO_SHA256_LEN];
    crypto_sha256(data, len, md);
    hex_encode(md, sizeof(md), out);
}

void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[CRYPTO_SHA256_LEN])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, key_len);
    crypto_auth_hmacsha256_update(&st, data, len);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

bool crypto_equal(const void *a, size_t a_len, const void *b, size_t b_len)
{
    if (a_len != b_len)
        return false;
    return a_len == 0 || sodium_memcmp(a, b, a_len) == 0;
}

int crypto_uuid(char out[CRYPTO_UUID_LEN])
{
    unsigned char b[16];
    if (crypto_random(b, sizeof(b)))
        return -EIO;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char h[33];
    hex_encode(b, sizeof(b), h);
    snprintf(out, CRYPTO_UUID_LEN, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
    return 0;
}

void crypto_base64url(const unsigned char *in, size_t n, char *out)
{
    sodium_bin2base64(out, sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                      in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static long decode(const char *in, size_t len, unsigned char *out, size_t cap, int variant)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    bool url = variant == sodium_base64_VARIANT_URLSAFE_NO_PADDING;
    /* libsodium 1.0.18 maps some bytes >= 0x80 to digits: check the alphabet first */
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (!c || !(strchr(alnum, c) || strchr(url ? "-_" : "+/=", c)))
            return -1;
    }
    size_t n = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, cap, in, len, NULL, &n, &end, variant) != 0 || end != in + len)
        return -1;
    return (long)n;
}

long crypto_base64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    return decode(in, len, out, cap, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

long crypto_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    bool padded = len && in[len - 1] == '=';
    return decode(in, len, out, cap,
                  padded ? sodium_base64_VARIANT_ORIGINAL
                         : sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

char *crypto_seal(const unsigned char key[32], const char *plain)
{
    size_t n = strlen(plain), raw_len = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + n;
    unsigned char *raw = malloc(raw_len);
    char *out = malloc(3 + 4 * ((raw_len + 2) / 3) + 1);
    if (!raw || !out) {
        free(raw);
        free(out);
        return NULL;
    }
    randombytes_buf(raw, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(raw + crypto_secretbox_NONCEBYTES, (const unsigned char *)plain, n, raw,
                          key);
    memcpy(out, "v1:", 3);
    crypto_base64url(raw, raw_len, out + 3);
    free(raw);
    return out;
}

char *crypto_open(const unsigned char key[32], const char *sealed)
{
    if (strncmp(sealed, "v1:", 3) != 0)
        return NULL;
    size_t len = strlen(sealed + 3), cap = len * 3 / 4 + 3;
    unsigned char *raw = malloc(cap);
    long n = raw ? crypto_base64url_decode(sealed + 3, len, raw, cap) : -1;
    char *plain = NULL;
    if (n >= (long)(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)) {
        size_t m = (size_t)n - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
        plain = malloc(m + 1);
        if (plain &&
            crypto_secretbox_open_easy((unsigned char *)plain, raw + crypto_secretbox_NONCEBYTES,
                                       (size_t)n - crypto_secretbox_NONCEBYTES, raw, key)) {
            free(plain);
            plain = NULL;
        } else if (plain) {
            plain[m] = '\0';
        }
    }
    free(raw);
    return plain;
}
