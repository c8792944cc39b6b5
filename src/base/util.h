/* util — small checked helpers: number parsing, time, string predicates. */
#ifndef SLIPWAY_BASE_UTIL_H
#define SLIPWAY_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses a whole decimal integer in [min, max]; 0 and *out set, or -EINVAL / -ERANGE. */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Milliseconds since the epoch (wall clock) and a monotonic clock in nanoseconds. */
int64_t time_now_ms(void);
int64_t time_mono_ns(void);
/* Formats epoch seconds as RFC 3339 UTC ("2024-05-01T12:00:00Z"); out holds >= 21 bytes. */
void time_rfc3339(int64_t epoch_s, char out[21]);
bool str_has_prefix(const char *s, const char *prefix);
/* Case-insensitive ASCII equality. */
bool str_ieq(const char *a, const char *b);
/* Writes all of data to fd, across short writes and EINTR; 0 or -errno. */
int fd_write_all(int fd, const void *data, size_t len);
/* Writes (creates or truncates) the file, without fsync: for files a crash may lose. -errno. */
int fs_write(const char *path, const void *data, size_t len, unsigned mode);
/* Writes a pid-unique temp file next to `path`, fsyncs and renames it over `path`. -errno. */
int fs_write_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* mkdir -p; -errno. */
int fs_mkdirs(const char *path, unsigned mode);
/* rm -rf (no symlink following); -errno. */
int fs_remove_tree(const char *path);

#endif
