/* crypto — random bytes, SHA-256 (one-shot and streamed), HMAC-SHA-256, constant-time comparison,
 * UUIDs and base64. The streamed SHA-256 is OpenSSL's (libcrypto's EVP digest, which uses the
 * CPU's SHA instructions where it has them: packages are hashed as they stream, at several
 * hundred MB/s), set up on its first use (it costs the process about 2 MB); the rest, the
 * one-shot SHA-256 of short data (credentials, the audit chain, names) included, is libsodium's.
 * Output buffers are sized by the caller with the constants below. Thread-safe once crypto_init()
 * has run (crypto_random runs it).
 */
#ifndef SLIPWAY_BASE_CRYPTO_H
#define SLIPWAY_BASE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

#define CRYPTO_SHA256_LEN 32
#define CRYPTO_SHA256_HEX 65 /* 64 hex digits + NUL */
#define CRYPTO_UUID_LEN   37 /* 8-4-4-4-12 + NUL */

/* Initializes libsodium (idempotent); 0, or -EIO. */
int crypto_init(void);
/* Fills buf with n cryptographically secure random bytes; 0, or -EIO. */
int crypto_random(void *buf, size_t n);
/* The SHA-256 of data[0..len), raw or as 64 lowercase hex digits: no allocation, cannot fail. */
void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN]);
void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX]);

/* A SHA-256 streamed over data that comes in pieces (a file as it is read or written): the same
 * digest as crypto_sha256 over the concatenation. Opaque.
 *
 * Lifecycle: crypto_sha256_new() (allocates), crypto_sha256_update() any number of times,
 * crypto_sha256_final() (which also starts the context over, empty, for the next data: one
 * context serves many files), crypto_sha256_free(). Errors are sticky: an update that failed
 * makes the next final fail. One thread at a time per context. */
struct crypto_sha256_ctx;
/* A context ready for data, or NULL when out of memory. */
struct crypto_sha256_ctx *crypto_sha256_new(void);
void crypto_sha256_update(struct crypto_sha256_ctx *ctx, const void *data, size_t len);
/* Writes the digest of all the data since new (or the last final) and starts over; 0, or -EIO
 * (out is then zeroed). */
int crypto_sha256_final(struct crypto_sha256_ctx *ctx, unsigned char out[CRYPTO_SHA256_LEN]);
/* Frees the context; NULL is a no-op. */
void crypto_sha256_free(struct crypto_sha256_ctx *ctx);

void crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                        unsigned char out[CRYPTO_SHA256_LEN]);
/* Compares two byte strings in time that depends only on their lengths. */
bool crypto_equal(const void *a, size_t a_len, const void *b, size_t b_len);
/* A random (version 4) UUID in lowercase; 0, or -EIO. */
int crypto_uuid(char out[CRYPTO_UUID_LEN]);
/* Encodes n bytes as unpadded base64url into out, which holds at least 4*((n+2)/3)+1 bytes. */
void crypto_base64url(const unsigned char *in, size_t n, char *out);
/* Decodes unpadded base64url; returns the decoded length, or -1 on a bad character or if it does
 * not fit in `cap` bytes. */
long crypto_base64url_decode(const char *in, size_t len, unsigned char *out, size_t cap);
/* Decodes standard base64 (with or without padding), e.g. an HTTP basic credential; as above. */
long crypto_base64_decode(const char *in, size_t len, unsigned char *out, size_t cap);

/* Authenticated encryption of short secrets (settings) with a 32-byte key: libsodium's
 * secretbox (XSalsa20-Poly1305, a random nonce each time). crypto_seal writes "v1:" and the
 * base64url of nonce + ciphertext into a new string (caller frees), or NULL. crypto_open gives
 * the plaintext as a new NUL-terminated string, or NULL when the text was not sealed with key
 * (or was changed). */
char *crypto_seal(const unsigned char key[32], const char *plain);
char *crypto_open(const unsigned char key[32], const char *sealed);

#endif
