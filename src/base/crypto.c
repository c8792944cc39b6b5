/* crypto — thin, checked wrappers over libsodium; see crypto.h. */
#include "base/crypto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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

void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN])
{
    crypto_hash_sha256(out, data, len);
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, in, n);
}

void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX])
{
    unsigned char md[CRYPTO_SHA256_LEN];
    crypto_sha256(data, len, md);
    hex(md, sizeof(md), out);
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
    hex(b, sizeof(b), h);
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
