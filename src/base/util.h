/* util — small checked helpers: number parsing, time, hex, string predicates, files. */
#ifndef SLIPWAY_BASE_UTIL_H
#define SLIPWAY_BASE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses a whole decimal integer in [min, max]; 0 and *out set, or -EINVAL / -ERANGE. */
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
/* Parses a size in bytes: digits, then nothing or B, KB, MB, GB, TB (also KiB, MiB, GiB, TiB;
 * all powers of 1024), no blanks: "500MB", "2GB", "1048576". In [min, max]: 0 and *out, or
 * -EINVAL (not a size) / -ERANGE. */
int parse_size(const char *s, int64_t min, int64_t max, int64_t *out);
/* Formats a byte count the way parse_size reads it, as short as exact ("2GB", "1536MB",
 * "1000B"); out holds >= 24 bytes. */
void format_size(int64_t bytes, char out[24]);
/* Milliseconds since the epoch (wall clock) and a monotonic clock in nanoseconds. */
int64_t time_now_ms(void);
int64_t time_mono_ns(void);
/* Formats epoch seconds as RFC 3339 UTC ("2024-05-01T12:00:00Z"); out holds >= 21 bytes. */
void time_rfc3339(int64_t epoch_s, char out[21]);
/* Writes n bytes as 2n lowercase hex digits and a NUL: out holds at least 2n+1 bytes. */
void hex_encode(const void *in, size_t n, char *out);
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
/* The disk space used by the tree at path (st_blocks of every entry, the top included; symlinks
 * not followed, other file systems not entered), at most 256 directories deep. Stops counting
 * once above stop_above (then *bytes is more than stop_above, not the full sum). 0 and *bytes, or
 * -errno (-ELOOP: deeper than 256). Safe on a tree others change meanwhile (fd-relative). */
int fs_disk_usage(const char *path, uint64_t stop_above, uint64_t *bytes);
/* chown -R without following symlinks (the top included), at most 256 directories deep. -errno. */
int fs_chown_tree(const char *path, unsigned uid, unsigned gid);

#endif
