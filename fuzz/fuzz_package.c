/* libFuzzer driver for builder/package: the input is an uploaded package, handed to
 * package_validate through a memfd with small limits. Oracles: only the documented codes; on
 * failure no manifest and a printable, non-empty message; on success a manifest object, the
 * same manifest from package_read_manifest, and package_extract of the same bytes must succeed
 * too (into a temp directory emptied after). Any violation abort()s.
 */
#include "builder/package.h"

#include "base/util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_INPUT (1 << 20)

static const struct package_limits limits = {
    .max_files = 64,
    .max_total_bytes = 1 << 20,
    .max_file_bytes = 256 << 10,
    .max_manifest_bytes = 64 << 10,
    .max_path = 256,
};

static char dest[] = "/tmp/fuzz_package.XXXXXX";

static void remove_dest(void)
{
    fs_remove_tree(dest);
}

static void check_message(int r, const char *err, size_t cap)
{
    if (r != -EINVAL && r != -EFBIG && r != -ENOMEM)
        abort();
    size_t len = strnlen(err, cap);
    if (len == 0 || len == cap)
        abort();
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool made;
    if (size > MAX_INPUT)
        return 0;
    if (!made) {
        if (!mkdtemp(dest))
            abort();
        atexit(remove_dest);
        made = true;
    }
    int fd = memfd_create("package", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0)
            abort();
        done += (size_t)n;
    }
    lseek(fd, 0, SEEK_SET);
    char err[512] = "";
    json_t *manifest = NULL;
    int r = package_validate(fd, &limits, &manifest, err, sizeof(err));
    if (r) {
        if (manifest)
            abort();
        check_message(r, err, sizeof(err));
    } else {
        if (!json_is_object(manifest) || !json_is_array(json_object_get(manifest, "files")))
            abort();
        json_t *only = NULL;
        lseek(fd, 0, SEEK_SET);
        if (package_read_manifest(fd, &limits, &only, err, sizeof(err)) != 0 ||
            !json_equal(only, manifest))
            abort();
        json_decref(only);
        json_decref(manifest);
        lseek(fd, 0, SEEK_SET);
        if (package_extract(fd, dest, &limits, err, sizeof(err)) != 0)
            abort();
        if (fs_remove_tree(dest) != 0 || mkdir(dest, 0700) != 0)
            abort();
    }
    close(fd);
    return 0;
}
