/* Tests for builder/package: a package written from a real temp workspace is checked with the
 * tools a person would use (sha256sum, tar, find, diff), validated and extracted; malicious
 * uploads are crafted here with libarchive and must each be refused with a message naming the
 * entry at fault.
 */
#include "builder/package.h"

#include "base/crypto.h"
#include "base/strbuf.h"

#include "../helpers.h"

#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static char *root; /* temp dir of the test */
static char err[512];
static char *scratch[64]; /* strings freed at teardown */
static size_t nr_scratch;

/* Keeps s until the end of the test. */
static char *keep(char *s)
{
    cr_assert_lt(nr_scratch, sizeof(scratch) / sizeof(scratch[0]));
    return scratch[nr_scratch++] = s;
}

static void put(const char *path, const char *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
}

/* Asserts that directory `path` holds nothing. */
static void assert_empty_dir(const char *path, const char *what)
{
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s: %s", path, strerror(errno));
    for (struct dirent *de; (de = readdir(d));)
        cr_assert(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."), "%s left '%s'", what,
                  de->d_name);
    closedir(d);
}

static void setup(void)
{
    root = strdup("/tmp/slipway-pkg-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    err[0] = '\0';
}

static void teardown(void)
{
    sh("chmod -R u+rwx %s && rm -rf %s", root, root);
    free(root);
    while (nr_scratch)
        free(scratch[--nr_scratch]);
}

TestSuite(package, .init = setup, .fini = teardown, .timeout = 20);

/* --- crafting packages with libarchive --- */

struct spec {
    const char *path;
    char type;        /* 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'c' char device */
    const char *data; /* file content; symlink or hard link target */
};

/* The manifest a correct package of these entries has (new reference). */
static json_t *auto_manifest(const struct spec *s, size_t n)
{
    json_t *files = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s}", "path", s[i].path);
        if (s[i].type == 'd') {
            json_object_set_new(o, "type", json_string("dir"));
        } else if (s[i].type == 'l') {
            json_object_set_new(o, "type", json_string("symlink"));
            json_object_set_new(o, "target", json_string(s[i].data));
        } else {
            const char *data = s[i].type == 'f' ? s[i].data : "";
            char hex[CRYPTO_SHA256_HEX];
            crypto_sha256_hex(data, strlen(data), hex);
            json_object_set_new(o, "size", json_integer((json_int_t)strlen(data)));
            json_object_set_new(o, "sha256", json_string(hex));
        }
        json_array_append_new(files, o);
    }
    return json_pack("{s:s,s:o}", "app", "demo", "files", files);
}

/* Writes a tar to `path` with `filter` ("zstd", "gzip", "none", or "zip" for a zip archive):
 * manifest.json holding `manifest` first (NULL: the correct one; "": no manifest), then the
 * entries. Returns path. */
static const char *craft(const char *path, const char *filter, const char *manifest,
                         const struct spec *s, size_t n)
{
    struct archive *a = archive_write_new();
    if (!strcmp(filter, "zip")) {
        cr_assert_eq(archive_write_set_format_zip(a), ARCHIVE_OK);
    } else {
        cr_assert_eq(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        if (!strcmp(filter, "zstd"))
            cr_assert_eq(archive_write_add_filter_zstd(a), ARCHIVE_OK);
        else if (!strcmp(filter, "gzip"))
            cr_assert_eq(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    }
    cr_assert_eq(archive_write_open_filename(a, path), ARCHIVE_OK);
    struct archive_entry *e = archive_entry_new();
    char *text = NULL;
    if (!manifest) {
        json_t *m = auto_manifest(s, n);
        manifest = text = json_dumps(m, 0);
        json_decref(m);
    }
    if (*manifest) {
        archive_entry_set_pathname(e, "manifest.json");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)strlen(manifest));
        cr_assert_eq(archive_write_header(a, e), ARCHIVE_OK);
        archive_write_data(a, manifest, strlen(manifest));
    }
    for (size_t i = 0; i < n; i++) {
        archive_entry_clear(e);
        archive_entry_set_pathname(e, s[i].path);
        archive_entry_set_perm(e, 0644);
        switch (s[i].type) {
        case 'f':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_size(e, (la_int64_t)strlen(s[i].data));
            break;
        case 'd':
            archive_entry_set_filetype(e, AE_IFDIR);
            archive_entry_set_perm(e, 0755);
            break;
        case 'l':
            archive_entry_set_filetype(e, AE_IFLNK);
            archive_entry_set_symlink(e, s[i].data);
            break;
        case 'h':
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, s[i].data);
            break;
        case 'c':
            archive_entry_set_filetype(e, AE_IFCHR);
            archive_entry_set_rdev(e, makedev(1, 3));
            break;
        }
        cr_assert_geq(archive_write_header(a, e), ARCHIVE_WARN, "%s", archive_error_string(a));
        if (s[i].type == 'f')
            archive_write_data(a, s[i].data, strlen(s[i].data));
    }
    archive_entry_free(e);
    cr_assert_eq(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    free(text);
    return path;
}

/* A tar header block (GNU magic) for an entry `name` of `type` and `size`. */
static void tar_header(unsigned char h[512], const char *name, char type, size_t size)
{
    memset(h, 0, 512);
    memcpy(h, name, strlen(name));
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf((char *)h + 124, 12, "%011zo", size % ((size_t)1 << 33)); /* 11 octal digits */
    memcpy(h + 136, "00000000000", 12);
    h[156] = (unsigned char)type;
    memcpy(h + 257, "ustar  ", 8);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 7, "%06o", sum);
}

static int validate_file(const char *path, const struct package_limits *lim, json_t **manifest)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s", path);
    err[0] = '\0';
    json_t *m = NULL;
    int r = package_validate(fd, lim, manifest ? manifest : &m, err, sizeof(err));
    close(fd);
    json_decref(m);
    return r;
}

/* Asserts that validating (and extracting) `path` fails with `code` and a message holding each
 * of `want` (NULL-terminated), and that the failed extraction leaves its directory empty. */
static void refused(const char *path, const struct package_limits *lim, int code, ...)
{
    json_t *m = (json_t *)1;
    cr_assert_eq(validate_file(path, lim, &m), code, "%s: got '%s'", path, err);
    cr_assert_eq(m, (json_t *)1, "manifest written on failure");
    va_list ap;
    va_start(ap, code);
    const char *want[8];
    size_t nr_want = 0;
    for (const char *w; (w = va_arg(ap, const char *)) && nr_want < 8;)
        want[nr_want++] = w;
    va_end(ap);
    for (size_t i = 0; i < nr_want; i++)
        cr_assert(strstr(err, want[i]), "%s: message '%s' lacks '%s'", path, err, want[i]);

    char *dest = str("%s/x", root);
    cr_assert(mkdir(dest, 0755) == 0 || errno == EEXIST);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char err2[512];
    cr_assert_eq(package_extract(fd, dest, lim, err2, sizeof(err2)), code, "%s", err2);
    close(fd);
    cr_assert_str_eq(err2, err, "extract and validate disagree");
    assert_empty_dir(dest, "extraction");
    cr_log_info("refused (%d): %s", code, err); /* shown with --verbose */
    free(dest);
}

/* --- writing, validating, extracting --- */

/* with "long/", a path over tar's 100-byte name field: stored through a pax header */
#define LONG_NAME                                                                                  \
    "a-file-name-that-is-rather-long-so-that-the-whole-path-does-not-fit-in-the-hundred-bytes-"    \
    "of-a-ustar-header.txt"

static void make_workspace(const char *ws)
{
    sh("mkdir -p %s/app/bin %s/app/lib/deep %s/app/empty %s/long", ws, ws, ws, ws);
    char *p = str("%s/app/main.txt", ws);
    put(p, "hello\n", 6, 0644);
    free(p);
    p = str("%s/app/bin/run.sh", ws);
    put(p, "#!/bin/sh\necho hi\n", 18, 0755);
    free(p);
    /* 300 KB of data: more than one read buffer */
    size_t n = 300 * 1024;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 7 + i / 1000);
    p = str("%s/app/lib/deep/data.bin", ws);
    put(p, big, n, 0600);
    free(p);
    free(big);
    p = str("%s/README", ws);
    put(p, "readme\n", 7, 0644);
    free(p);
    p = str("%s/caf\xc3\xa9.txt", ws);
    put(p, "utf-8 name\n", 11, 0644);
    free(p);
    p = str("%s/long/%s", ws, LONG_NAME);
    put(p, "long\n", 5, 0644);
    free(p);
    p = str("%s/ignored.txt", ws);
    put(p, "not included\n", 13, 0644);
    free(p);
    /* sizes around SHA-256's 64-byte blocks and its 55/56-byte padding boundary */
    static const int edge_sizes[] = {0, 55, 56, 63, 64, 65, 119, 120, 128};
    sh("mkdir %s/app/edge", ws);
    char edge[128];
    memset(edge, 'e', sizeof(edge));
    for (size_t i = 0; i < sizeof(edge_sizes) / sizeof(edge_sizes[0]); i++) {
        p = str("%s/app/edge/s%03d", ws, edge_sizes[i]);
        put(p, edge, (size_t)edge_sizes[i], 0644);
        free(p);
    }
    sh("chmod 0750 %s/app/empty", ws);
    sh("ln -s lib/deep %s/app/current", ws);
    sh("ln -s ../README %s/app/readme-link", ws);
}

Test(package, write_validate_extract)
{
    char *ws = str("%s/ws", root), *out = str("%s/out", root),
         *pkg = str("%s/out/pkg.tar.zst", root);
    make_workspace(ws);
    sh("mkdir %s", out);
    const char *include[] = {"app", "README", "./caf\xc3\xa9.txt", "long/", "app/bin"};
    json_t *manifest = json_pack("{s:s,s:s,s:s,s:s}", "app", "demo", "branch", "main", "revision",
                                 "0123abc", "version", "1.2.3");
    char sha[PACKAGE_SHA256_HEX];
    uint64_t size = 0;
    int r = package_write(ws, include, 5, manifest, pkg, NULL, sha, &size, err, sizeof(err));
    cr_assert_eq(r, 0, "package_write: %d %s", r, err);

    /* the whole file: what sha256sum and stat say; nothing else left in the directory */
    char *want_sha = sh_out("sha256sum %s | cut -c1-64 | tr -d '\\n'", pkg);
    cr_assert_str_eq(sha, want_sha);
    struct stat st;
    cr_assert_eq(stat(pkg, &st), 0);
    cr_assert_eq((uint64_t)st.st_size, size);
    char *listing = sh_out("ls -A %s", out);
    cr_assert_str_eq(listing, "pkg.tar.zst\n");
    /* a plain tar with zstd: manifest.json comes first */
    char *first = sh_out("tar --zstd -tf %s | head -1", pkg);
    cr_assert_str_eq(first, "manifest.json\n");

    /* the manifest: the caller's fields, and every entry once, in tree order */
    static const char *const want_paths[] = {
        "README",
        "app",
        "app/bin",
        "app/bin/run.sh",
        "app/current",
        "app/edge",
        "app/edge/s000",
        "app/edge/s055",
        "app/edge/s056",
        "app/edge/s063",
        "app/edge/s064",
        "app/edge/s065",
        "app/edge/s119",
        "app/edge/s120",
        "app/edge/s128",
        "app/empty",
        "app/lib",
        "app/lib/deep",
        "app/lib/deep/data.bin",
        "app/main.txt",
        "app/readme-link",
        "caf\xc3\xa9.txt",
        "long",
        "long/" LONG_NAME,
    };
    size_t nr_want = sizeof(want_paths) / sizeof(want_paths[0]);
    json_t *files = json_object_get(manifest, "files");
    cr_assert_eq(json_array_size(files), nr_want);
    for (size_t i = 0; i < nr_want; i++)
        cr_assert_str_eq(json_string_value(json_object_get(json_array_get(files, i), "path")),
                         want_paths[i]);

    /* validation gives back the same manifest; each file's sha256 is what sha256sum says */
    json_t *got = NULL;
    r = validate_file(pkg, NULL, &got);
    cr_assert_eq(r, 0, "package_validate: %d %s", r, err);
    cr_assert(json_equal(got, manifest));
    cr_assert_str_eq(json_string_value(json_object_get(got, "version")), "1.2.3");
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(got, "files"), i, f)
    {
        const char *path = json_string_value(json_object_get(f, "path"));
        const char *type = json_string_value(json_object_get(f, "type"));
        if (type) {
            cr_assert(!strcmp(type, "dir") || !strcmp(type, "symlink"));
            continue;
        }
        char *sum = sh_out("cd %s && sha256sum '%s' | cut -c1-64 | tr -d '\\n'", ws, path);
        cr_assert_str_eq(json_string_value(json_object_get(f, "sha256")), sum, "%s", path);
        free(sum);
        char *full = str("%s/%s", ws, path);
        cr_assert_eq(stat(full, &st), 0);
        cr_assert_eq(json_integer_value(json_object_get(f, "size")), st.st_size);
        cr_assert_eq(json_integer_value(json_object_get(f, "mode")), st.st_mode & 0777, "%s", path);
        free(full);
    }
    json_t *link = json_array_get(json_object_get(got, "files"), 4);
    cr_assert_str_eq(json_string_value(json_object_get(link, "target")), "lib/deep");
    json_decref(got);

    /* the manifest alone, without reading the files */
    int fd = open(pkg, O_RDONLY | O_CLOEXEC);
    got = NULL;
    cr_assert_eq(package_read_manifest(fd, NULL, &got, err, sizeof(err)), 0, "%s", err);
    close(fd);
    cr_assert(json_equal(got, manifest));
    json_decref(got);

    /* extraction gives the same tree: types, modes, sizes, mtimes, targets and contents */
    char *x = str("%s/x", root);
    sh("mkdir %s", x);
    fd = open(pkg, O_RDONLY | O_CLOEXEC);
    r = package_extract(fd, x, NULL, err, sizeof(err));
    close(fd);
    cr_assert_eq(r, 0, "package_extract: %d %s", r, err);
    const char *find =
        "find README app caf\xc3\xa9.txt long \\( -type f -printf '%p f %m %s %Ts\\n' "
        "\\) -o \\( -type d -printf '%p d %m\\n' \\) -o \\( -type l -printf "
        "'%p l %l\\n' \\) | LC_ALL=C sort";
    char *tree_ws = sh_out("cd %s && %s", ws, find), *tree_x = sh_out("cd %s && %s", x, find);
    cr_assert_str_eq(tree_x, tree_ws);
    cr_assert(strstr(tree_x, "app/empty d 750\n"), "%s", tree_x);
    cr_assert(strstr(tree_x, "app/bin/run.sh f 755 "), "%s", tree_x);
    sh("diff -r --no-dereference %s/app %s/app", ws, x);
    sh("test ! -e %s/ignored.txt", x);

    /* not into a directory that holds something */
    fd = open(pkg, O_RDONLY | O_CLOEXEC);
    cr_assert_eq(package_extract(fd, x, NULL, err, sizeof(err)), -ENOTEMPTY);
    close(fd);
    cr_assert(strstr(err, "not empty"), "%s", err);

    /* written again over the same dest_path: replaced atomically, same listing */
    r = package_write(ws, include, 5, manifest, pkg, NULL, sha, &size, err, sizeof(err));
    cr_assert_eq(r, 0, "%s", err);
    free(listing);
    listing = sh_out("ls -A %s", out);
    cr_assert_str_eq(listing, "pkg.tar.zst\n");

    json_decref(manifest);
    free(tree_ws);
    free(tree_x);
    free(x);
    free(first);
    free(listing);
    free(want_sha);
    free(ws);
    free(out);
    free(pkg);
}

/* package_write with `include` (NULL-terminated) from `ws`: asserts it fails with code and a
 * message holding `want`, and leaves no file behind and the caller's manifest as it was. */
static void write_refused(const char *ws, const char *const *include,
                          const struct package_limits *lim, int code, const char *want)
{
    size_t n = 0;
    while (include[n])
        n++;
    char *out = str("%s/out", root), *pkg = str("%s/out/pkg.tar.zst", root);
    cr_assert(mkdir(out, 0755) == 0 || errno == EEXIST);
    unlink(pkg);
    json_t *manifest = json_pack("{s:s}", "app", "demo");
    char sha[PACKAGE_SHA256_HEX] = "untouched";
    uint64_t size = 42;
    err[0] = '\0';
    int r = package_write(ws, include, n, manifest, pkg, lim, sha, &size, err, sizeof(err));
    cr_assert_eq(r, code, "%s: got %d '%s'", include[0], r, err);
    cr_assert(strstr(err, want), "message '%s' lacks '%s'", err, want);
    cr_assert_str_eq(sha, "untouched");
    cr_assert_eq(size, 42);
    cr_assert_null(json_object_get(manifest, "files"));
    assert_empty_dir(out, "package_write");
    json_decref(manifest);
    free(out);
    free(pkg);
}

Test(package, write_refusals)
{
    char *ws = str("%s/ws", root);
    make_workspace(ws);
    const char *missing[] = {"app", "nope/x", NULL};
    write_refused(ws, missing, NULL, -ENOENT, "include 'nope/x' does not exist in the workspace");
    const char *up[] = {"../x", NULL};
    write_refused(ws, up, NULL, -EINVAL, "include '../x' leaves the workspace");
    const char *abs[] = {"/etc", NULL};
    write_refused(ws, abs, NULL, -EINVAL, "include '/etc' is an absolute path");
    const char *empty[] = {"", NULL};
    write_refused(ws, empty, NULL, -EINVAL, "empty");

    /* an include through a symlink, even one inside the workspace */
    sh("ln -s app %s/applink", ws);
    const char *through[] = {"applink/main.txt", NULL};
    write_refused(ws, through, NULL, -EINVAL,
                  "include 'applink/main.txt' goes through symlink 'applink'");

    /* limits are those of package_validate */
    const char *all[] = {".", NULL};
    struct package_limits lim = PACKAGE_LIMITS_DEFAULT;
    lim.max_files = 5;
    write_refused(ws, all, &lim, -EFBIG, "more than 5 entries");
    lim = (struct package_limits)PACKAGE_LIMITS_DEFAULT;
    lim.max_file_bytes = 1000;
    write_refused(ws, all, &lim, -EFBIG, "'app/lib/deep/data.bin' is 307200 bytes");

    /* symlinks leaving the workspace, absolute or relative, or with '..' after a name */
    sh("ln -s /etc %s/app/etc", ws);
    write_refused(ws, all, NULL, -EINVAL,
                  "'app/etc' is a symlink to '/etc', outside the workspace");
    sh("rm %s/app/etc && ln -s ../../x %s/app/up", ws, ws);
    write_refused(ws, all, NULL, -EINVAL,
                  "'app/up' is a symlink to '../../x', outside the workspace");
    sh("rm %s/app/up && ln -s lib/../main.txt %s/app/sneaky", ws, ws);
    write_refused(ws, all, NULL, -EINVAL, "'..' may only start a symlink target");
    sh("rm %s/app/sneaky", ws);

    /* no FIFOs (nor sockets or devices) */
    sh("mkfifo %s/app/lib/pipe", ws);
    write_refused(ws, all, NULL, -EINVAL, "workspace file 'app/lib/pipe' is a FIFO");
    sh("rm %s/app/lib/pipe", ws);

    /* a workspace file that would be mistaken for the manifest */
    sh("echo {} > %s/manifest.json", ws);
    write_refused(ws, all, NULL, -EINVAL, "'manifest.json' would clash");
    const char *but_app[] = {"app", NULL};
    char *pkg = str("%s/out/pkg.tar.zst", root);
    json_t *manifest = json_pack("{s:s}", "app", "demo");
    char sha[PACKAGE_SHA256_HEX];
    uint64_t size;
    cr_assert_eq(package_write(ws, but_app, 1, manifest, pkg, NULL, sha, &size, err, sizeof(err)),
                 0, "%s", err);
    json_decref(manifest);

    /* a destination that cannot be written */
    char *bad = str("%s/no/such/dir/pkg.tar.zst", root);
    manifest = json_pack("{s:s}", "app", "demo");
    cr_assert_eq(package_write(ws, but_app, 1, manifest, bad, NULL, sha, &size, err, sizeof(err)),
                 -ENOENT);
    cr_assert(strstr(err, "cannot create a temp file next to"), "%s", err);
    cr_assert_null(json_object_get(manifest, "files"));
    json_decref(manifest);
    free(bad);
    free(pkg);
    free(ws);
}

/* --- uploads --- */

Test(package, uploads_accepted)
{
    /* zstd, gzip and uncompressed; a directory after its contents; '.' and a trailing '/' on a
     * directory name are fine */
    struct spec s[] = {
        {"d/f.txt", 'f', "in d\n"},    {"d", 'd', NULL},     {"top.txt", 'f', "top\n"},
        {"d/link", 'l', "../top.txt"}, {"d/here", 'l', "."},
    };
    const char *filters[] = {"zstd", "gzip", "none"};
    for (size_t i = 0; i < 3; i++) {
        char *p = str("%s/ok-%s.tar", root, filters[i]);
        craft(p, filters[i], NULL, s, 5);
        json_t *m = NULL;
        cr_assert_eq(validate_file(p, NULL, &m), 0, "%s: %s", filters[i], err);
        cr_assert_eq(json_array_size(json_object_get(m, "files")), 5);
        json_decref(m);
        char *x = str("%s/x-%s", root, filters[i]);
        sh("mkdir %s", x);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        cr_assert_eq(package_extract(fd, x, NULL, err, sizeof(err)), 0, "%s", err);
        close(fd);
        char *content = sh_out("cat %s/d/f.txt %s/d/link", x, x);
        cr_assert_str_eq(content, "in d\ntop\n");
        free(content);
        free(x);
        free(p);
    }
    /* streamed from a pipe */
    char *p = str("%s/ok-zstd.tar", root);
    char *cmd = str("cat %s", p);
    FILE *f = popen(cmd, "r");
    json_t *m = NULL;
    cr_assert_eq(package_validate(fileno(f), NULL, &m, err, sizeof(err)), 0, "%s", err);
    cr_assert(json_is_object(m));
    json_decref(m);
    pclose(f);
    free(cmd);
    free(p);
}

Test(package, uploads_refused)
{
#define P(name) keep(str("%s/%s", root, name))
    /* path traversal and absolute paths: named, whether or not the manifest lists them */
    struct spec trav[] = {{"ok.txt", 'f', "ok\n"}, {"../evil", 'f', "evil\n"}};
    refused(craft(P("trav"), "zstd", NULL, trav, 2), NULL, -EINVAL,
            "manifest entry '../evil' leaves the package", NULL);
    refused(craft(P("trav2"), "zstd", "{\"files\":[]}", trav + 1, 1), NULL, -EINVAL,
            "package entry '../evil' leaves the package", NULL);
    struct spec abs[] = {{"/tmp/evil", 'f', "evil\n"}};
    refused(craft(P("abs"), "zstd", "{\"files\":[]}", abs, 1), NULL, -EINVAL,
            "package entry '/tmp/evil' is an absolute path", NULL);
    struct spec mid[] = {{"a/../../b", 'f', "x"}};
    refused(craft(P("mid"), "none", "{\"files\":[]}", mid, 1), NULL, -EINVAL, "'a/../../b'",
            "leaves the package", NULL);

    /* symlink escapes: a link out, then a file through it */
    struct spec esc[] = {{"link", 'l', "/etc"}, {"link/passwd", 'f', "root::0:0\n"}};
    refused(craft(P("esc"), "zstd", NULL, esc, 2), NULL, -EINVAL,
            "manifest entry 'link' is a symlink to '/etc', outside the package", NULL);
    refused(craft(P("esc2"), "zstd", "{\"files\":[]}", esc, 2), NULL, -EINVAL,
            "package entry 'link' is a symlink to '/etc', outside the package", NULL);
    struct spec esc3[] = {{"a/link", 'l', "../../etc"}};
    refused(craft(P("esc3"), "zstd", NULL, esc3, 1), NULL, -EINVAL, "'a/link'", "outside", NULL);
    struct spec inside[] = {{"sub", 'd', NULL}, {"link", 'l', "sub"}, {"link/x", 'f', "x"}};
    refused(craft(P("through"), "zstd", NULL, inside, 3), NULL, -EINVAL,
            "manifest entry 'link/x' lies inside symlink 'link'", NULL);
    struct spec chain[] = {{"p", 'l', "."}, {"q/r", 'l', "../p/.."}};
    refused(craft(P("chain"), "zstd", NULL, chain, 2), NULL, -EINVAL, "'q/r'",
            "'..' may only start a symlink target", NULL);

    /* hard links, devices */
    struct spec hard[] = {{"a.txt", 'f', "a"}, {"b.txt", 'h', "a.txt"}};
    refused(craft(P("hard"), "zstd", NULL, hard, 2), NULL, -EINVAL,
            "package entry 'b.txt' is a hard link", NULL);
    struct spec dev[] = {{"null", 'c', NULL}};
    refused(craft(P("dev"), "zstd", NULL, dev, 1), NULL, -EINVAL,
            "package entry 'null' is a character device", NULL);

    /* the manifest: missing, not JSON, not matching */
    struct spec two[] = {{"a.txt", 'f', "a\n"}, {"b.txt", 'f', "b\n"}};
    refused(craft(P("noman"), "zstd", "", two, 2), NULL, -EINVAL,
            "does not start with 'manifest.json' (its first entry is 'a.txt')", NULL);
    refused(craft(P("notjson"), "zstd", "{\"files\": [", two, 2), NULL, -EINVAL,
            "'manifest.json' is not valid JSON", NULL);
    refused(craft(P("nofiles"), "zstd", "[1, 2]", two, 2), NULL, -EINVAL, "\"files\" array", NULL);
    json_t *m = auto_manifest(two, 2);
    json_t *a = json_array_get(json_object_get(m, "files"), 0);
    json_object_set_new(a, "sha256",
                        json_string("00000000000000000000000000000000000000000000000"
                                    "00000000000000000"));
    char *text = json_dumps(m, 0);
    refused(craft(P("badsha"), "zstd", text, two, 2), NULL, -EINVAL,
            "package entry 'a.txt' does not match its sha256 in the manifest", NULL);
    int fd = open(P("badsha"), O_RDONLY | O_CLOEXEC),
        fd2 = open(P("notjson"), O_RDONLY | O_CLOEXEC);
    json_t *only = NULL;
    cr_assert_eq(package_read_manifest(fd, NULL, &only, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(json_array_size(json_object_get(only, "files")), 2);
    json_decref(only);
    cr_assert_eq(package_read_manifest(fd2, NULL, &only, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "not valid JSON"), "%s", err);
    close(fd);
    close(fd2);
    free(text);
    json_decref(m);
    m = auto_manifest(two, 2);
    json_array_remove(json_object_get(m, "files"), 1);
    text = json_dumps(m, 0);
    refused(craft(P("unlisted"), "zstd", text, two, 2), NULL, -EINVAL,
            "package entry 'b.txt' is not listed in the manifest", NULL);
    refused(craft(P("nothing-listed"), "zstd", "{\"files\":[]}", two, 2), NULL, -EINVAL,
            "package entry 'a.txt' is not listed in the manifest", NULL);
    refused(craft(P("absent"), "zstd", text, two, 0), NULL, -EINVAL,
            "'manifest.json' lists 'a.txt' but the package does not contain it", NULL);
    free(text);
    json_decref(m);
    struct spec links[] = {{"a.txt", 'f', "a\n"}, {"l", 'l', "a.txt"}};
    m = auto_manifest(links, 2);
    json_object_set_new(json_array_get(json_object_get(m, "files"), 1), "target",
                        json_string("b.txt"));
    text = json_dumps(m, 0);
    refused(craft(P("retarget"), "zstd", text, links, 2), NULL, -EINVAL,
            "package entry 'l' points to 'a.txt' but the manifest says 'b.txt'", NULL);
    free(text);
    json_decref(m);
    struct spec twice[] = {{"a.txt", 'f', "a\n"}, {"a.txt", 'f', "a\n"}};
    m = auto_manifest(twice, 1);
    text = json_dumps(m, 0);
    refused(craft(P("twice"), "zstd", text, twice, 2), NULL, -EINVAL,
            "package entry 'a.txt' appears twice", NULL);
    free(text);
    json_decref(m);

    /* limits */
    struct spec five[] = {{"1", 'f', "1"},
                          {"2", 'f', "2"},
                          {"3", 'f', "3"},
                          {"4", 'f', "4"},
                          {"big", 'f', "0123456789012345678901234567890123456789"}};
    struct package_limits lim = PACKAGE_LIMITS_DEFAULT;
    lim.max_files = 3;
    refused(craft(P("many"), "zstd", NULL, five, 5), &lim, -EFBIG, "5 entries",
            "more than the limit of 3", NULL);
    lim = (struct package_limits)PACKAGE_LIMITS_DEFAULT;
    lim.max_file_bytes = 20;
    refused(craft(P("big"), "zstd", NULL, five, 5), &lim, -EFBIG,
            "manifest entry 'big' is 40 bytes, more than the limit of 20", NULL);
    /* a manifest that understates: the archive's own size is checked too */
    m = auto_manifest(five, 5);
    json_object_set_new(json_array_get(json_object_get(m, "files"), 4), "size", json_integer(1));
    text = json_dumps(m, 0);
    refused(craft(P("big2"), "zstd", text, five, 5), &lim, -EFBIG,
            "package entry 'big' is 40 bytes, more than the limit of 20", NULL);
    free(text);
    json_decref(m);
    lim = (struct package_limits)PACKAGE_LIMITS_DEFAULT;
    lim.max_total_bytes = 30;
    refused(craft(P("total"), "zstd", NULL, five, 5), &lim, -EFBIG, "more than 30 bytes", NULL);
    lim = (struct package_limits)PACKAGE_LIMITS_DEFAULT;
    lim.max_path = 8;
    struct spec longp[] = {{"abcdefghij", 'f', "x"}};
    refused(craft(P("longpath"), "zstd", NULL, longp, 1), &lim, -EFBIG, "'abcdefghij'",
            "more than the limit of 8", NULL);

    /* a run of GNU long-name headers (3.2 MB): libarchive reads them in one go (up to 32 of up
     * to 1 MB), so nothing reaches the per-entry checks; the tar stream's budget, computed from
     * the limits (here about 2.1 MB), stops it */
    lim = (struct package_limits){.max_files = 2,
                                  .max_total_bytes = 1024,
                                  .max_file_bytes = 1024,
                                  .max_manifest_bytes = 1024,
                                  .max_path = 64};
    char *bomb = P("longlinks");
    FILE *f = fopen(bomb, "w");
    cr_assert_not_null(f);
    size_t name_len = 128 * 1024;
    unsigned char h[512], *name = malloc(name_len);
    memset(name, 'x', name_len - 1);
    name[name_len - 1] = '\0';
    for (int i = 0; i < 25; i++) {
        tar_header(h, "././@LongLink", 'L', name_len);
        fwrite(h, 1, sizeof(h), f);
        fwrite(name, 1, name_len, f);
    }
    tar_header(h, "manifest.json", '0', 0);
    fwrite(h, 1, sizeof(h), f);
    fclose(f);
    free(name);
    refused(bomb, &lim, -EFBIG, "package expands to more than", "more than its limits allow", NULL);

    /* a manifest of tiny values, which would cost jansson far more memory than its size */
    lim = (struct package_limits)PACKAGE_LIMITS_DEFAULT;
    lim.max_files = 10;
    struct strbuf wide = STRBUF_INIT;
    strbuf_adds(&wide, "{\"files\":[],\"x\":[1");
    for (int i = 0; i < 5000; i++)
        strbuf_adds(&wide, ",1");
    strbuf_adds(&wide, "]}");
    refused(craft(P("wide"), "zstd", wide.buf, NULL, 0), &lim, -EFBIG,
            "'manifest.json' holds more than 4256 JSON values", NULL);
    strbuf_release(&wide);

    /* not a tar at all */
    refused(craft(P("zip"), "zip", NULL, two, 2), NULL, -EINVAL, "not a valid tar archive", NULL);
    char *rnd = P("random");
    unsigned char junk[4096];
    cr_assert_eq(crypto_random(junk, sizeof(junk)), 0);
    put(rnd, (const char *)junk, sizeof(junk), 0644);
    refused(rnd, NULL, -EINVAL, "not a valid tar archive", NULL);
    char *empty = P("empty");
    put(empty, "", 0, 0644);
    refused(empty, NULL, -EINVAL, "package is empty (0 bytes)", NULL);
    /* a truncated package */
    struct spec one[] = {{"a.txt", 'f', "a\n"}};
    char *trunc = P("trunc");
    craft(trunc, "zstd", NULL, one, 1);
    sh("truncate -s 60 %s", trunc);
    refused(trunc, NULL, -EINVAL, "package", NULL);
#undef P
}

Test(package, extract_never_writes_outside)
{
    /* the good file is extracted, then the bad hash is found: all of it is removed again */
    struct spec two[] = {{"d/a.txt", 'f', "a\n"}, {"d/b.txt", 'f', "b\n"}};
    json_t *m = auto_manifest(two, 2);
    json_object_set_new(json_array_get(json_object_get(m, "files"), 1), "sha256",
                        json_string("1111111111111111111111111111111111111111111111111111111111"
                                    "111111"));
    char *text = json_dumps(m, 0), *p = str("%s/badsha", root);
    refused(craft(p, "zstd", text, two, 2), NULL, -EINVAL, "'d/b.txt' does not match", NULL);
    /* a path out of the package: nothing appears next to the destination */
    char *x = str("%s/x", root);
    struct spec trav[] = {{"../evil", 'f', "evil\n"}};
    refused(craft(p, "zstd", NULL, trav, 1), NULL, -EINVAL, "leaves the package", NULL);
    sh("test ! -e %s/evil", root);
    free(x);
    free(p);
    free(text);
    json_decref(m);
}

/* --- decompression bombs: nothing after the tar, no more than the manifest accounts for --- */

/* Asserts that `path` validates and extracts. */
static void accepted(const char *path)
{
    json_t *m = NULL;
    cr_assert_eq(validate_file(path, NULL, &m), 0, "%s: %s", path, err);
    cr_assert(json_is_object(m));
    json_decref(m);
    char *x = str("%s/x-ok", root);
    sh("rm -rf %s && mkdir %s", x, x);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_eq(package_extract(fd, x, NULL, err, sizeof(err)), 0, "%s: %s", path, err);
    close(fd);
    free(x);
}

/* Writes a tar member by hand: a header block, then `len` bytes of data padded to 512. */
static void put_member(FILE *f, const char *name, char type, const void *data, size_t len)
{
    unsigned char h[512];
    tar_header(h, name, type, len);
    cr_assert_eq(fwrite(h, 1, sizeof(h), f), sizeof(h));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    static const char zeros[512];
    if (len % 512)
        cr_assert_eq(fwrite(zeros, 1, 512 - len % 512, f), 512 - len % 512);
}

Test(package, data_after_the_tar)
{
#define P(name) keep(str("%s/%s", root, name))
    struct spec one[] = {{"a.txt", 'f', "a\n"}};
    /* a valid tar, padded to a record of 10240 bytes as libarchive, GNU tar and Python write it */
    const char *tar = craft(P("pkg.tar"), "none", NULL, one, 1);
    sh("zstd -q -c %s > %s/pkg.tar.zst && gzip -c %s > %s/pkg.tar.gz", tar, root, tar, root);
    accepted(P("pkg.tar.zst"));

    /* the bomb: the tar then 8 MB of zeros in the same zstd stream */
    sh("(cat %s; head -c 8M /dev/zero) | zstd -q -c > %s/bomb.tar.zst", tar, root);
    refused(P("bomb.tar.zst"), NULL, -EFBIG,
            "more than 65536 bytes of zeros after the end of its tar archive", NULL);
    /* ... or in a second frame */
    sh("cp %s/pkg.tar.zst %s/frame.tar.zst && head -c 1M /dev/zero | zstd -q -c >> "
       "%s/frame.tar.zst",
       root, root, root);
    refused(P("frame.tar.zst"), NULL, -EFBIG, "after the end of its tar archive", NULL);
    /* data, not zeros, after the end-of-archive: in the stream, in a second frame, in a plain
     * tar */
    sh("(cat %s; printf x) | zstd -q -c > %s/garbage.tar.zst", tar, root);
    refused(P("garbage.tar.zst"), NULL, -EINVAL,
            "package has data after the end of its tar archive", NULL);
    sh("cp %s/pkg.tar.zst %s/frame2.tar.zst && printf 'more' | zstd -q -c >> %s/frame2.tar.zst",
       root, root, root);
    refused(P("frame2.tar.zst"), NULL, -EINVAL, "data after the end of its tar archive", NULL);
    sh("(cat %s; printf x) > %s/garbage.tar", tar, root);
    refused(P("garbage.tar"), NULL, -EINVAL, "data after the end of its tar archive", NULL);
    /* bytes after the last gzip member (which gzip itself ignores), or after the zstd frame */
    sh("(cat %s/pkg.tar.gz; printf 'not gzip, a trailer') > %s/trailer.tar.gz", root, root);
    refused(P("trailer.tar.gz"), NULL, -EINVAL, "data after the end of its compressed stream",
            NULL);
    sh("(cat %s/pkg.tar.zst; printf 'not zstd, a trailer') > %s/trailer.tar.zst", root, root);
    refused(P("trailer.tar.zst"), NULL, -EINVAL, "Zstd decompression failed", NULL);

    /* what is fine: zeros up to a record of 64 KiB (tar -b 128), a second frame of such zeros,
     * skippable frames (pzstd writes one before each frame), GNU tar's own padding */
    sh("(cat %s; head -c %d /dev/zero) | zstd -q -c > %s/pad.tar.zst", tar, 65536 - 10240, root);
    accepted(P("pad.tar.zst"));
    sh("cp %s/pkg.tar.zst %s/pad2.tar.zst && head -c 4096 /dev/zero | zstd -q -c >> "
       "%s/pad2.tar.zst",
       root, root, root);
    accepted(P("pad2.tar.zst"));
    sh("cp %s/pkg.tar.zst %s/skip.tar.zst && printf 'P*M\\030\\004\\000\\000\\000skip' >> "
       "%s/skip.tar.zst",
       root, root, root);
    accepted(P("skip.tar.zst"));
    sh("pzstd -q -c %s > %s/pzstd.tar.zst", tar, root);
    accepted(P("pzstd.tar.zst"));
    json_t *m = auto_manifest(one, 1);
    char *text = json_dumps(m, 0), *gnu = P("gnu");
    json_decref(m);
    sh("mkdir %s", gnu);
    put(keep(str("%s/manifest.json", gnu)), text, strlen(text), 0644);
    put(keep(str("%s/a.txt", gnu)), "a\n", 2, 0644);
    for (int blocking = 1; blocking <= 128; blocking *= 4) {
        sh("cd %s && tar --format=gnu -b %d -cf - manifest.json a.txt | zstd -q -c > "
           "../gnu-%d.tar.zst",
           gnu, blocking, blocking);
        accepted(keep(str("%s/gnu-%d.tar.zst", root, blocking)));
    }

    /* a bomb inside the tar: 16 pax headers of 1000 KB (libarchive takes up to 1 MiB each,
     * 32 in a row) before a.txt's header; a few KB compressed, 16 MB of tar for a 2-byte file */
    FILE *f = fopen(P("paxbomb.tar"), "w");
    cr_assert_not_null(f);
    put_member(f, "manifest.json", '0', text, strlen(text));
    size_t rec_len = 1000 * 1024;
    char *rec = malloc(rec_len);
    int head = snprintf(rec, rec_len, "%zu comment=", rec_len);
    memset(rec + head, 'z', rec_len - (size_t)head - 1);
    rec[rec_len - 1] = '\n';
    for (int i = 0; i < 16; i++)
        put_member(f, "PaxHeader/a.txt", 'x', rec, rec_len);
    put_member(f, "a.txt", '0', "a\n", 2);
    static const char end[1024];
    cr_assert_eq(fwrite(end, 1, sizeof(end), f), sizeof(end));
    fclose(f);
    free(rec);
    free(text);
    sh("zstd -q -c %s/paxbomb.tar > %s/paxbomb.tar.zst", root, root);
    refused(P("paxbomb.tar.zst"), NULL, -EFBIG, "package expands to more than",
            "more than the entries of its 'manifest.json' account for", NULL);
#undef P
}

/* An endless stream of zeros after the tar, read from a pipe: refused once it is 64 KiB past
 * the end-of-archive, so refusing a bomb costs no more than reading the real content. */
Test(package, endless_bomb_stops_early)
{
    struct spec one[] = {{"a.txt", 'f', "a\n"}};
    char *tar = str("%s/pkg.tar", root);
    craft(tar, "none", NULL, one, 1);
    char *cmd = str("(cat %s; cat /dev/zero) | zstd -q -1 -c", tar);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    json_t *m = (json_t *)1;
    int r = package_validate(fileno(f), NULL, &m, err, sizeof(err));
    pclose(f); /* zstd and cat end on SIGPIPE */
    cr_assert_eq(r, -EFBIG, "%d: %s", r, err);
    cr_assert_eq(m, (json_t *)1);
    cr_assert(strstr(err, "after the end of its tar archive"), "%s", err);
    free(cmd);
    free(tar);
}
