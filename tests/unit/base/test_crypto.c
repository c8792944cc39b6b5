/* Tests for crypto: SHA-256 (one-shot, and streamed in pieces of every size around the 64-byte
 * block) and HMAC against published vectors, constant-time comparison, the
 * UUID format, and base64/base64url round trips and rejections (RFC 4648 vectors).
 * Checks are plain functions, run in a few Test cases at the end: Criterion starts a process
 * per test (~50 ms each here) and the unit tests must stay fast.
 */
#include "base/crypto.h"
#include "base/util.h"

#include <criterion/criterion.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

TestSuite(crypto, .timeout = 10);

/* Encoded length of n bytes as unpadded base64: ceil(4n/3). */
static size_t b64_len(size_t n)
{
    return (4 * n + 2) / 3;
}

/* Decodes from an exact-size copy of the input, into an exact-size output of `cap` bytes. */
static long decode(bool url, const char *in, size_t len, unsigned char *out, size_t cap)
{
    char *copy = malloc(len ? len : 1);
    unsigned char *buf = malloc(cap ? cap : 1);
    cr_assert(copy && buf);
    memcpy(copy, in, len);
    long n = url ? crypto_base64url_decode(copy, len, buf, cap)
                 : crypto_base64_decode(copy, len, buf, cap);
    if (n > 0)
        memcpy(out, buf, (size_t)n);
    free(copy);
    free(buf);
    return n;
}

/* ---- hashes ---- */

static void sha256_vectors(void)
{
    char hex[CRYPTO_SHA256_HEX];
    crypto_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    crypto_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unsigned char raw[CRYPTO_SHA256_LEN];
    char again[CRYPTO_SHA256_HEX];
    crypto_sha256("abc", 3, raw);
    hex_encode(raw, sizeof(raw), again);
    cr_assert_str_eq(again, hex);
}

/* The streamed digest of data cut into pieces of `piece` bytes (the last one shorter), as hex. */
static void streamed_hex(struct crypto_sha256_ctx *ctx, const unsigned char *data, size_t len,
                         size_t piece, char out[CRYPTO_SHA256_HEX])
{
    for (size_t at = 0; at < len; at += piece)
        crypto_sha256_update(ctx, data + at, len - at < piece ? len - at : piece);
    unsigned char md[CRYPTO_SHA256_LEN];
    cr_assert_eq(crypto_sha256_final(ctx, md), 0);
    hex_encode(md, sizeof(md), out);
}

/* FIPS 180-2's vectors: two blocks of padding, and a million bytes. */
static void sha256_streamed_matches_vectors(void)
{
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    char hex[CRYPTO_SHA256_HEX];
    struct crypto_sha256_ctx *ctx = crypto_sha256_new();
    cr_assert_not_null(ctx);
    streamed_hex(ctx, (const unsigned char *)two, strlen(two), 7, hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* final started it over: nothing hashed since is the empty string's digest */
    streamed_hex(ctx, NULL, 0, 1, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    size_t len = 1000000;
    unsigned char *a = malloc(len);
    cr_assert_not_null(a);
    memset(a, 'a', len);
    streamed_hex(ctx, a, len, 4096 + 3, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    crypto_sha256_hex(a, len, hex);
    cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(a);
    crypto_sha256_free(ctx);
    crypto_sha256_free(NULL);
}

/* Every length up to three blocks, cut into every piece size up to two blocks: the same digest
 * as the one-shot hash of the whole. */
static void sha256_streamed_in_pieces_equals_one_shot(void)
{
    unsigned char data[3 * 64 + 1];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 131 + 7);
    struct crypto_sha256_ctx *ctx = crypto_sha256_new();
    cr_assert_not_null(ctx);
    for (size_t len = 0; len <= sizeof(data); len++) {
        char whole[CRYPTO_SHA256_HEX], pieces[CRYPTO_SHA256_HEX];
        crypto_sha256_hex(data, len, whole);
        for (size_t piece = 1; piece <= 2 * 64 + 1; piece++) {
            streamed_hex(ctx, data, len, piece, pieces);
            cr_assert_str_eq(pieces, whole, "len %zu in pieces of %zu", len, piece);
        }
    }
    crypto_sha256_free(ctx);
}

static void hmac_sha256_rfc4231(void)
{
    unsigned char mac[CRYPTO_SHA256_LEN];
    char hex[CRYPTO_SHA256_HEX];
    const char *data = "what do ya want for nothing?";
    crypto_hmac_sha256("Jefe", 4, data, strlen(data), mac);
    hex_encode(mac, sizeof(mac), hex);
    cr_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    unsigned char key[20];
    memset(key, 0x0b, sizeof(key));
    crypto_hmac_sha256(key, sizeof(key), "Hi There", 8, mac);
    hex_encode(mac, sizeof(mac), hex);
    cr_assert_str_eq(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

/* ---- random, equal, uuid ---- */

static void random_fills_and_differs(void)
{
    unsigned char a[32] = {0}, b[32] = {0}, zero[32] = {0};
    cr_assert_eq(crypto_random(a, sizeof(a)), 0);
    cr_assert_eq(crypto_random(b, sizeof(b)), 0);
    cr_assert_neq(memcmp(a, zero, sizeof(a)), 0);
    cr_assert_neq(memcmp(a, b, sizeof(a)), 0);
    cr_assert_eq(crypto_random(a, 0), 0);
}

static void equal(void)
{
    cr_assert(crypto_equal("abc", 3, "abc", 3));
    cr_assert(crypto_equal("", 0, "", 0));
    cr_assert(crypto_equal("a\0b", 3, "a\0b", 3)); /* bytes, not C strings */
    cr_assert_not(crypto_equal("abc", 3, "abd", 3));
    cr_assert_not(crypto_equal("xbc", 3, "abc", 3));
    cr_assert_not(crypto_equal("abc", 3, "abcd", 4));
    cr_assert_not(crypto_equal("abcd", 4, "abc", 3));
    cr_assert_not(crypto_equal("a\0b", 3, "a\0c", 3));
    cr_assert_not(crypto_equal("", 0, "a", 1));
}

static void assert_uuid_v4(const char *u)
{
    cr_assert_eq(strlen(u), 36, "uuid '%s'", u);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_assert_eq(u[i], '-', "uuid '%s'", u);
        else
            cr_assert(isxdigit((unsigned char)u[i]) && !isupper((unsigned char)u[i]),
                      "uuid '%s': not lowercase hex at %d", u, i);
    }
    cr_assert_eq(u[14], '4', "uuid '%s': version", u);
    cr_assert(strchr("89ab", u[19]), "uuid '%s': variant", u);
}

static void uuid_is_lowercase_v4_rfc4122_variant(void)
{
    static const char variant_digits[] = "89ab";
    char prev[CRYPTO_UUID_LEN] = "";
    bool variants[4] = {false};
    for (int i = 0; i < 500; i++) {
        char u[CRYPTO_UUID_LEN];
        cr_assert_eq(crypto_uuid(u), 0);
        assert_uuid_v4(u);
        cr_assert_str_neq(u, prev);
        variants[strchr(variant_digits, u[19]) - variant_digits] = true;
        memcpy(prev, u, sizeof(u));
    }
    /* the 2 free variant bits are random: all four values show up in 500 draws */
    for (int i = 0; i < 4; i++)
        cr_assert(variants[i]);
}

/* ---- base64url ---- */

static void base64url_rfc4648_vectors(void)
{
    const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        char out[16];
        size_t n = strlen(plain[i]);
        crypto_base64url((const unsigned char *)plain[i], n, out);
        cr_assert_str_eq(out, enc[i]);
        unsigned char back[16];
        cr_assert_eq(decode(true, enc[i], strlen(enc[i]), back, n), (long)n);
        cr_assert_eq(memcmp(back, plain[i], n), 0);
    }
}

static void base64url_uses_url_alphabet(void)
{
    const unsigned char in[] = {0xfb, 0xff, 0xbf};
    char out[8];
    crypto_base64url(in, 3, out);
    cr_assert_str_eq(out, "-_-_");
    crypto_base64url(in, 2, out);
    cr_assert_str_eq(out, "-_8");
}

static void base64url_round_trip_all_lengths(void)
{
    unsigned char in[100], back[100];
    char enc[4 * ((sizeof(in) + 2) / 3) + 1];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(in); n++) {
        memset(enc, '#', sizeof(enc));
        crypto_base64url(in, n, enc);
        cr_assert_eq(strlen(enc), b64_len(n), "length for n=%zu", n);
        cr_assert_eq(
            strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            strlen(enc));
        cr_assert_eq(decode(true, enc, strlen(enc), back, n), (long)n, "n=%zu", n);
        cr_assert_eq(memcmp(back, in, n), 0, "n=%zu", n);
    }
}

static void base64url_rejects_bad_input(void)
{
    unsigned char out[16];
    const char *bad[] = {"Z", "Zm9vY", "Zm9v!", "Zm 9v", "Zm9v\n", "Zg==", "Zm+v", "Zm/v", "=Zm9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(decode(true, bad[i], strlen(bad[i]), out, sizeof(out)), -1, "'%s'", bad[i]);
    cr_assert_eq(decode(true, "Zm\0v", 4, out, sizeof(out)), -1);
    cr_assert_eq(decode(true, "Zm\xc3\xa9", 4, out, sizeof(out)), -1);
}

static void base64url_decode_respects_cap(void)
{
    unsigned char out[8];
    cr_assert_eq(decode(true, "Zm9vYmFy", 8, out, 6), 6);
    cr_assert_eq(memcmp(out, "foobar", 6), 0);
    cr_assert_eq(decode(true, "Zm9vYmFy", 8, out, 5), -1);
    cr_assert_eq(decode(true, "Zg", 2, out, 0), -1);
    cr_assert_eq(decode(true, "", 0, out, 0), 0);
}

/* ---- standard base64 ---- */

static void base64_with_and_without_padding(void)
{
    unsigned char out[16];
    cr_assert_eq(decode(false, "Zm9vYmE=", 8, out, sizeof(out)), 5);
    cr_assert_eq(memcmp(out, "fooba", 5), 0);
    cr_assert_eq(decode(false, "Zm9vYg==", 8, out, sizeof(out)), 4);
    cr_assert_eq(memcmp(out, "foob", 4), 0);
    cr_assert_eq(decode(false, "Zm9vYg", 6, out, sizeof(out)), 4);
    cr_assert_eq(memcmp(out, "foob", 4), 0);
    cr_assert_eq(decode(false, "Zm9vYmFy", 8, out, sizeof(out)), 6);
    cr_assert_eq(memcmp(out, "foobar", 6), 0);
    cr_assert_eq(decode(false, "", 0, out, sizeof(out)), 0);
}

static void base64_uses_standard_alphabet(void)
{
    unsigned char out[4];
    cr_assert_eq(decode(false, "+/+/", 4, out, sizeof(out)), 3);
    cr_assert_eq(memcmp(out, "\xfb\xff\xbf", 3), 0);
    cr_assert_eq(decode(false, "-_-_", 4, out, sizeof(out)), -1);
}

static void base64_basic_credential(void)
{
    unsigned char out[32];
    long n = decode(false, "dXNlckBleGFtcGxlLmNvbTpzM2NyM3Q=", 32, out, sizeof(out));
    cr_assert_eq(n, (long)strlen("user@example.com:s3cr3t"));
    cr_assert_eq(memcmp(out, "user@example.com:s3cr3t", (size_t)n), 0);
}

static void base64_rejects_bad_input(void)
{
    unsigned char out[16];
    const char *bad[] = {"Z", "Z===", "Zm9vY", "Zm=9v", "Zm9v!", "Zm9v Zg==", "Zm9v\r\n", "=Zm9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(decode(false, bad[i], strlen(bad[i]), out, sizeof(out)), -1, "'%s'", bad[i]);
    cr_assert_eq(decode(false, "Zm9v", 4, out, 2), -1); /* cap */
}

static void base64_round_trip_via_url_alphabet(void)
{
    unsigned char in[64], back[64];
    char enc[4 * ((sizeof(in) + 2) / 3) + 4];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(255 - i * 7);
    for (size_t n = 0; n <= sizeof(in); n++) {
        crypto_base64url(in, n, enc);
        size_t len = strlen(enc);
        for (size_t i = 0; i < len; i++)
            enc[i] = enc[i] == '-' ? '+' : enc[i] == '_' ? '/' : enc[i];
        cr_assert_eq(decode(false, enc, len, back, n), (long)n, "unpadded n=%zu", n);
        cr_assert_eq(memcmp(back, in, n), 0);
        while (len % 4)
            enc[len++] = '=';
        enc[len] = '\0';
        cr_assert_eq(decode(false, enc, len, back, n), (long)n, "padded n=%zu", n);
        cr_assert_eq(memcmp(back, in, n), 0);
    }
}

Test(crypto, hashes)
{
    sha256_vectors();
    sha256_streamed_matches_vectors();
    sha256_streamed_in_pieces_equals_one_shot();
    hmac_sha256_rfc4231();
}

Test(crypto, random_and_equal)
{
    random_fills_and_differs();
    equal();
}

Test(crypto, uuid)
{
    uuid_is_lowercase_v4_rfc4122_variant();
}

Test(crypto, base64url)
{
    base64url_rfc4648_vectors();
    base64url_uses_url_alphabet();
    base64url_round_trip_all_lengths();
    base64url_decode_respects_cap();
    base64url_rejects_bad_input();
}

Test(crypto, base64)
{
    base64_with_and_without_padding();
    base64_uses_standard_alphabet();
    base64_basic_credential();
    base64_round_trip_via_url_alphabet();
    base64_rejects_bad_input();
}
