/* crypto — random bytes, SHA-256, HMAC-SHA-256, constant-time comparison, UUIDs and base64,
 * all on libsodium (small, and cheap to start). Output buffers are sized by the caller with the
 * constants below. Thread-safe once crypto_init() has run (crypto_random runs it).
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
void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_SHA256_LEN]);
void crypto_sha256_hex(const void *data, size_t len, char out[CRYPTO_SHA256_HEX]);
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

#endif
