/* package — deployment packages: write one from a build's workspace, validate an uploaded one,
 * extract one into a release directory.
 *
 * A package is a tar (pax) compressed with zstd, `<PackageId>.tar.zst`. Its first entry is
 * `manifest.json`; then come the files, directories and symlinks of the build's
 * `package.include` paths, under their paths relative to the workspace, sorted so that every
 * directory comes before what it holds. The manifest is a JSON object: the caller's fields (app,
 * branch, revision, version ...) and a "files" array that lists every other entry once:
 *
 *   {"app": "...", ..., "files": [
 *     {"path": "bin/app", "size": 5120, "sha256": "<64 lowercase hex>", "mode": 493},
 *     {"path": "static", "type": "dir", "mode": 493},
 *     {"path": "current", "type": "symlink", "target": "static/v2"}]}
 *
 * "type" is "file" when absent; "mode" is the permission bits (07777 at most), in decimal JSON.
 *
 * What a valid package is (package_validate and package_extract check all of it, in one pass
 * over the stream, never holding more than the manifest in memory):
 *   - a tar (pax, ustar or GNU), compressed with zstd or gzip, or not compressed;
 *   - `manifest.json` first: a regular file of at most max_manifest_bytes holding a JSON object
 *     with a "files" array as above (duplicate keys are refused) and at most 16 JSON values per
 *     allowed entry plus 4096 (counted on the text before parsing: parsed JSON costs ~50 bytes a
 *     value);
 *   - every other entry is a regular file, a directory or a symlink: no hard links, devices,
 *     FIFOs or sockets; listed in the manifest with the same type, size and sha256 (files),
 *     target (symlinks) and mode (when the manifest gives one); no entry twice; every manifest
 *     entry present in the archive;
 *   - paths are relative UTF-8, '/'-separated, with no empty, '.' or '..' component (a
 *     directory may end in '/'), at most max_path bytes; nothing lies inside a file or a symlink
 *     ("link/passwd" when "link" is a symlink is refused);
 *   - symlink targets are relative, at most max_path bytes, with '..' only as leading components,
 *     and never climb above the package root ("../../x" from "a/link" is refused). With the rule
 *     above this keeps every symlink inside the package however symlinks chain; it is stricter
 *     than "resolves inside" ("a/../b" is refused), and package_write applies the same rule;
 *   - at most max_files entries (files, directories and symlinks, the manifest not counted),
 *     max_file_bytes per file and max_total_bytes for all files together; and the tar stream,
 *     counted as it is decompressed, no longer than such a package can be (the manifest, the
 *     files, and 8 KiB + 4 * max_path of headers per entry, plus 2 MiB): a compressed bomb is
 *     stopped even where libarchive would read on without returning an entry;
 *   - once the manifest is read, the tar stream no longer than its entries account for: what
 *     has been read, then per entry its data rounded to 512 and 4 KiB of headers plus twice its
 *     path and target, the end-of-archive blocks and 64 KiB of padding. Reading stops at the
 *     first block past that bound, so refusing a bomb costs about as much as reading the real
 *     content;
 *   - nothing after the tar's end-of-archive blocks but zeros, at most 64 KiB of them (the
 *     padding of tar's last record: 10240 bytes by default, 64 KiB with a blocking factor of
 *     128), whether in the same zstd frame or gzip member or a later one; zstd's skippable
 *     frames carry no data and are fine (pzstd writes them); and no byte after the compressed
 *     stream (gzip itself would ignore it). A package with data after its end-of-archive would
 *     pass every other rule and still expand to all of it on every download.
 *
 * Errors: every function returns 0 or a negative code, and on error writes a message a person
 * can act on into err (lowercase, NUL-terminated, truncated to err_cap), naming the entry or
 * include at fault: "package entry '../etc/passwd' leaves the package". Paths in messages are
 * cut to 200 bytes and their control characters shown as '?'. Nothing is logged.
 *   -EINVAL  not a valid package / a workspace that cannot be packaged (the message says why)
 *   -EFBIG   a limit is exceeded
 *   -ENOENT  (package_write) an include path does not exist in the workspace
 *   -EAGAIN  (package_write) a file changed while it was being packaged
 *   -ENOTEMPTY (package_extract) dest_dir is not empty
 *   -ENOMEM, or another -errno from reading or writing files (-EIO, -ENOSPC, -EACCES ...)
 *
 * Threads: no global state; libarchive runs under a thread-local UTF-8 locale (uselocale) for
 * the duration of each call. No chdir, no umask. Every fd opened is O_CLOEXEC and closed before
 * return. package_write compresses on two libzstd worker threads, beside the calling thread.
 * It knows nothing of HTTP, the store or where packages live in the data directory.
 */
#ifndef SLIPWAY_BUILDER_PACKAGE_H
#define SLIPWAY_BUILDER_PACKAGE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define PACKAGE_MANIFEST   "manifest.json"
#define PACKAGE_SHA256_HEX 65 /* 64 hex digits + NUL */

/* Bounds on everything a package may hold. Every field must be set; use PACKAGE_LIMITS_DEFAULT
 * (or pass NULL for it) and change what you need. */
struct package_limits {
    uint64_t max_files;          /* entries besides the manifest: files, dirs, symlinks */
    uint64_t max_total_bytes;    /* sum of the regular files' sizes */
    uint64_t max_file_bytes;     /* one regular file */
    uint64_t max_manifest_bytes; /* manifest.json, which is held in memory */
    size_t max_path;             /* bytes in an entry path or a symlink target */
};

#define PACKAGE_LIMITS_DEFAULT                                                                     \
    {                                                                                              \
        .max_files = 100000, .max_total_bytes = 4ULL << 30, .max_file_bytes = 2ULL << 30,          \
        .max_manifest_bytes = 64ULL << 20, .max_path = 1024                                        \
    }

/* Writes the package of `workspace` to dest_path.
 *
 * include[0..nr_include) are paths relative to the workspace (files or directories; "." is the
 * whole workspace); a directory is taken with everything below it. An include that is absolute
 * or has a '..' component, does not exist, or goes through a symlink ("dist/x" when "dist" is a
 * symlink) is an error; overlapping includes are fine (each entry is stored once). Below them,
 * only regular files, directories and symlinks are taken (a FIFO, socket or device is an error),
 * symlinks are stored as symlinks (never followed) and must obey the target rule above, and a
 * workspace file named manifest.json at the top is an error. Names must be valid UTF-8. Modes
 * keep the permission bits 0777 (no setuid, setgid, sticky); owners are not stored (uid/gid 0).
 * The limits are checked as for package_validate, so a package written is a package accepted.
 *
 * `manifest` is the caller's JSON object (app, branch, revision, version ...): on success its
 * "files" member is set to the list described above (replacing any "files" it had), and it is
 * written as manifest.json; on failure it is left as it was. The caller keeps its reference.
 *
 * Each file is read twice: once to hash it, once to store it (the manifest comes first, so every
 * hash must be known before the first file). The workspace must not change meanwhile; a change
 * that is noticed (size, inode, mtime, ctime) fails with -EAGAIN.
 *
 * Output: zstd level 3 into a temp file next to dest_path (`<dest_path>.tmp.XXXXXX`, mode 0600),
 * fsynced, renamed over dest_path, and the directory fsynced: dest_path is never seen
 * half-written, and on failure the temp file is removed and dest_path untouched. On success,
 * sha256_hex receives the SHA-256 of the whole .tar.zst (as `sha256sum` prints it) and *size its
 * size in bytes; on failure neither is written.
 * lim: NULL for PACKAGE_LIMITS_DEFAULT. Returns 0 or a negative code (see above).
 *
 * For the end-to-end tests only, which must see a build in the middle of packaging without
 * racing it: when the environment variable SLIPWAY_TEST_PACKAGE_GATE names a FIFO, package_write
 * first opens it for reading (which waits for a writer) and reads it until the writer closes it.
 * The test sees a packaging held there when its own non-blocking open for writing succeeds (it
 * fails with ENXIO while nobody reads), removes the FIFO so that no later package is held, and
 * closes its end to let the packaging go on. Unset (as in production), or not a FIFO: nothing. */
int package_write(const char *workspace, const char *const *include, size_t nr_include,
                  json_t *manifest, const char *dest_path, const struct package_limits *lim,
                  char sha256_hex[PACKAGE_SHA256_HEX], uint64_t *size, char *err, size_t err_cap);

/* Validates the package read from fd (from its current offset to the end of the archive; it
 * may be a pipe or a socket: the package is streamed, never loaded whole) against all the rules
 * above, hashing every file. fd is not closed and its offset is left anywhere.
 * On success returns 0 and *manifest receives the parsed manifest (a new reference: the caller
 * json_decref()s it); on failure *manifest is not written and err says why.
 * lim: NULL for PACKAGE_LIMITS_DEFAULT. Returns 0, -EINVAL, -EFBIG, -ENOMEM or -errno of read. */
int package_validate(int fd, const struct package_limits *lim, json_t **manifest, char *err,
                     size_t err_cap);

/* Reads only the manifest of the package read from fd (its first entry: a few KB to decompress,
 * whatever the package's size) and checks it as package_validate does, but not the files: for a
 * package that was validated (or written) when it was stored, e.g. to answer an API request.
 * Same contract as package_validate otherwise. */
int package_read_manifest(int fd, const struct package_limits *lim, json_t **manifest, char *err,
                          size_t err_cap);

/* Extracts the package read from fd into dest_dir, which must exist and be empty, validating
 * it on the way exactly as package_validate does (a package validated earlier is checked again:
 * extraction trusts nothing). Entries are created relative to an fd of dest_dir with *at()
 * calls that never follow a symlink (O_NOFOLLOW on every path component, O_EXCL for files), so
 * nothing is ever written outside dest_dir; owners are not restored; files and directories get
 * the package's permission bits & 0777 exactly (the umask does not apply) and its mtimes; a
 * parent directory the package does not list is made 0755 (less the umask).
 * Directories' modes are applied at the end, so a read-only directory still gets its contents.
 * manifest.json itself is not extracted (the caller has it from package_validate).
 * On failure everything created below dest_dir is removed again (dest_dir stays, empty); a
 * file whose sha256 does not match is detected only once it is written, which is why.
 * (libarchive's archive_write_disk is not used: it resolves paths against the working directory
 * and flips the process-wide umask on every entry, which races with other threads.)
 * lim: NULL for PACKAGE_LIMITS_DEFAULT. Returns 0, -EINVAL, -EFBIG, -ENOTEMPTY, -ENOMEM or
 * -errno. */
int package_extract(int fd, const char *dest_dir, const struct package_limits *lim, char *err,
                    size_t err_cap);

#endif
