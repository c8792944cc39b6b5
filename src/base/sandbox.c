/* sandbox — bubblewrap command lines and the identity of user code; see sandbox.h. */
#include "base/sandbox.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <seccomp.h>

#include "base/util.h"
#include "base/banned.h"

static int lookup(const char *name, uid_t *uid, gid_t *gid)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    int r = getpwnam_r(name, &pw, buf, sizeof(buf), &found);
    if (r)
        return -r;
    if (!found)
        return -ENOENT;
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

/* useradd --system: no home, no login shell, a group of its own. Another server making the same
 * user at the same time is fine: the lookup after decides. */
static int make_user(const char *name)
{
    char *useradd = proc_find_program("useradd", "/usr/sbin:/sbin:/usr/bin:/bin");
    if (!useradd)
        return -ENOENT;
    char *argv[] = {"useradd",      "--system",
                    "--user-group", "--no-create-home",
                    "--home-dir",   "/nonexistent",
                    "--shell",      "/usr/sbin/nologin",
                    "--comment",    "Slipway sandboxed code",
                    (char *)name,   NULL};
    char *env[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", NULL};
    pid_t pid;
    int r = proc_spawn(useradd, argv, env, -1, -1, -1, &pid);
    if (!r)
        r = proc_wait(pid) < 0 ? -ECHILD : 0;
    free(useradd);
    return r;
}

int sandbox_user_init(const char *name, bool create, struct sandbox_user *u, char *why,
                      size_t why_len)
{
    struct stat st;
    memset(u, 0, sizeof(*u));
    u->mount = stat("/mnt", &st) == 0 && S_ISDIR(st.st_mode) ? "/mnt" : "/tmp";
    if (geteuid() != 0) {
        u->uid = geteuid();
        u->gid = getegid();
        return 0;
    }
    if (!name || !*name || strlen(name) >= sizeof(u->name)) {
        snprintf(why, why_len, "'%s' is not a user name", name ? name : "");
        return -EINVAL;
    }
    int r = lookup(name, &u->uid, &u->gid);
    if (r == -ENOENT && create) {
        make_user(name);
        r = lookup(name, &u->uid, &u->gid);
    }
    if (r == -ENOENT) {
        snprintf(why, why_len,
                 "the user '%s' does not exist%s: make it (useradd --system --user-group "
                 "--no-create-home --shell /usr/sbin/nologin %s) or name another one",
                 name, create ? " and useradd could not make it" : "", name);
        return r;
    }
    if (r) {
        snprintf(why, why_len, "cannot look up the user '%s': %s", name, strerror(-r));
        return r;
    }
    if (u->uid == 0 || u->gid == 0) {
        snprintf(why, why_len, "the user '%s' has uid or gid 0: user code must not run as root",
                 name);
        return -EPERM;
    }
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->drop = true;
    return 0;
}

int sandbox_user_share(struct sandbox_user *u, const char *dir)
{
    if (!u->drop)
        return 0;
    char *copy = strdup(dir);
    if (!copy)
        return -ENOMEM;
    int fd, r = proc_mount_ns_new(dir, u->mount, &fd);
    if (r) {
        free(copy);
        return r;
    }
    sandbox_user_release(u);
    u->shared = copy;
    u->mount_ns = fd;
    return 0;
}

void sandbox_user_release(struct sandbox_user *u)
{
    if (u->mount_ns > 0)
        close(u->mount_ns);
    u->mount_ns = 0;
    free(u->shared);
    u->shared = NULL;
}

/* The name of dir beneath u->shared, when dir is directly beneath it ("a", not "a/b"). */
static const char *shared_name(const struct sandbox_user *u, const char *dir)
{
    size_t len = u->shared ? strlen(u->shared) : 0;
    if (!len || strncmp(dir, u->shared, len) != 0 || dir[len] != '/')
        return NULL;
    const char *name = dir + len + 1;
    return *name && !strchr(name, '/') && strcmp(name, "..") && strcmp(name, ".") ? name : NULL;
}

int sandbox_chown(const struct sandbox_user *u, const char *path, bool tree)
{
    if (!u->drop)
        return 0;
    if (tree)
        return fs_chown_tree(path, u->uid, u->gid);
    return lchown(path, u->uid, u->gid) < 0 ? -errno : 0;
}

const char *sandbox_host_opts(const struct sandbox_user *u, const char *dir, struct proc_opts *opts)
{
    if (!u->drop) {
        opts->no_new_privs = true;
        return dir;
    }
    opts->bind_src = dir;
    opts->bind_dst = u->mount;
    opts->set_ids = true;
    opts->uid = u->uid;
    opts->gid = u->gid;
    opts->no_new_privs = true;
    return u->mount;
}

/* What a sandbox sees of the host's /etc (besides resolv.conf and hosts with the network). */
static const char *const etc_files[SANDBOX_ETC_FILES] = {
    "/etc/alternatives", "/etc/ld.so.cache", "/etc/passwd",
    "/etc/group",        "/etc/ssl",         "/etc/ca-certificates"};

void sandbox_etc_stamp(const char *root, struct sandbox_etc_stamp *s)
{
    char path[PATH_MAX];
    struct stat st;
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < SANDBOX_ETC_FILES; i++) {
        snprintf(path, sizeof(path), "%s%s", root ? root : "", etc_files[i]);
        if (stat(path, &st) == 0) { /* missing: 0/0, as --ro-bind-try leaves it */
            s->dev[i] = st.st_dev;
            s->ino[i] = st.st_ino;
        }
    }
}

bool sandbox_etc_same(const struct sandbox_etc_stamp *a, const struct sandbox_etc_stamp *b)
{
    for (size_t i = 0; i < SANDBOX_ETC_FILES; i++)
        if (a->dev[i] != b->dev[i] || a->ino[i] != b->ino[i])
            return false;
    return true;
}

/* Appends one argument to c->argv (the functions below count them in `a`). */
#define ARG(s)                                                                                     \
    do {                                                                                           \
        if (a >= SANDBOX_MAX_ARGS - 1)                                                             \
            return -EINVAL;                                                                        \
        c->argv[a++] = (char *)(s);                                                                \
    } while (0)

/* a followed by b, in a string c owns; NULL when out of memory or room. */
static char *own(struct sandbox_cmd *c, const char *a, const char *b)
{
    char *s = NULL;
    if (c->nr_owned >= sizeof(c->owned) / sizeof(c->owned[0]) || asprintf(&s, "%s%s", a, b) < 0)
        return NULL;
    return c->owned[c->nr_owned++] = s;
}

/* The file system of a sandbox's root at prefix/ ("" for the sandbox's own root; the prepared
 * root of an executor else), but for /dev, /proc and the binds: /usr and the host's /etc files
 * read-only (with the network, resolv.conf and hosts too), the /bin, /sbin, /lib, /lib64 links.
 * With a prefix, /etc is a tmpfs of its own that the caller makes read-only. */
static int root_args(struct sandbox_cmd *c, size_t *pa, const char *prefix, bool network)
{
    size_t a = *pa;
    static const char *const links[][2] = {
        {"usr/bin", "/bin"}, {"usr/sbin", "/sbin"}, {"usr/lib", "/lib"}, {"usr/lib64", "/lib64"}};
    char *to;
    ARG("--ro-bind");
    ARG("/usr");
    if (!(to = own(c, prefix, "/usr")))
        return -ENOMEM;
    ARG(to);
    if (*prefix) {
        if (!(to = own(c, prefix, "/etc")))
            return -ENOMEM;
        ARG("--tmpfs");
        ARG(to);
    }
    for (size_t i = 0; i < SANDBOX_ETC_FILES + (network ? 2 : 0); i++) {
        const char *from = i < SANDBOX_ETC_FILES    ? etc_files[i]
                           : i == SANDBOX_ETC_FILES ? "/etc/resolv.conf"
                                                    : "/etc/hosts";
        if (!(to = own(c, prefix, from)))
            return -ENOMEM;
        ARG("--ro-bind-try");
        ARG(from);
        ARG(to);
    }
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        if (!(to = own(c, prefix, links[i][1])))
            return -ENOMEM;
        ARG("--symlink");
        ARG(links[i][0]);
        ARG(to);
    }
    *pa = a;
    return 0;
}

int sandbox_cmd_init(struct sandbox_cmd *c, const struct sandbox_user *u,
                     const struct sandbox_spec *spec)
{
    size_t a = 0;
    int r;
    memset(c, 0, sizeof(*c));
    if (spec->nr_binds > SANDBOX_MAX_BINDS || (spec->inner && spec->network))
        return -EINVAL; /* an executor's prepared root has no resolv.conf */
    const char *base, *name = u->drop && u->mount_ns > 0 ? shared_name(u, spec->dir) : NULL;
    if (spec->inner) {
        base = spec->dir;
    } else if (name) { /* the namespace of sandbox_user_share, where it is u->mount/name */
        char *seen = NULL;
        if (asprintf(&seen, "%s/%s", u->mount, name) < 0)
            return -ENOMEM;
        c->owned[c->nr_owned++] = seen;
        base = seen;
        c->opts.mount_ns = u->mount_ns;
        c->opts.set_ids = true;
        c->opts.uid = u->uid;
        c->opts.gid = u->gid;
        c->opts.no_new_privs = true;
    } else {
        base = sandbox_host_opts(u, spec->dir, &c->opts);
    }
    ARG("bwrap");
    ARG("--die-with-parent");
    ARG("--new-session");
    if (spec->inner) { /* the user, network and UTS namespaces are the executor's */
        ARG("--unshare-pid");
        ARG("--unshare-ipc");
        ARG("--clearenv"); /* the step's script exports its environment */
        if (spec->seccomp_fd) {
            ARG("--seccomp");
            ARG(spec->seccomp_fd);
        }
    } else {
        ARG("--unshare-all");
        ARG("--unshare-user"); /* never skipped: the user namespace is what leaves no capability */
        ARG("--disable-userns");
    }
    ARG("--cap-drop");
    ARG("ALL");
    ARG("--as-pid-1"); /* the command is the namespace's pid 1: no extra fork */
    if (spec->network && !spec->inner)
        ARG("--share-net");
    if (spec->block_fd) {
        ARG("--block-fd");
        ARG(spec->block_fd);
    }
    if (spec->inner) { /* the executor's prepared root, whole (sandbox_executor_init) */
        char *root = own(c, base, "/" SANDBOX_PREPARED);
        if (!root)
            return -ENOMEM;
        ARG("--dev-bind"); /* recursive, each mount as read-only as it is there */
        ARG(root);
        ARG("/");
        ARG("--tmpfs"); /* each step's own: POSIX shared memory must not reach the next build */
        ARG("/dev/shm");
        ARG("--proc");
        ARG("/proc");
    } else {
        r = root_args(c, &a, "", spec->network);
        if (r)
            return r;
        ARG("--dev");
        ARG("/dev");
        ARG("--proc");
        ARG("/proc");
        for (size_t i = 0; i < spec->nr_binds; i++) {
            char *src = own(c, base, "/");
            if (!src || !(src = own(c, src, spec->binds[i].name)))
                return -ENOMEM;
            ARG(spec->binds[i].writable ? "--bind" : "--ro-bind");
            ARG(src);
            ARG(spec->binds[i].dest);
        }
    }
    if (spec->nr_binds && base != spec->dir) {
        char *host = own(c, spec->dir, "/");
        if (!host || !(host = own(c, host, spec->binds[0].name)))
            return -ENOMEM;
        ARG("--symlink");
        ARG(host);
        ARG("/.slipway-host");
    }
    if (spec->chdir) {
        ARG("--chdir");
        ARG(spec->chdir);
    }
    ARG("--");
    for (size_t i = 0; spec->command[i]; i++)
        ARG(spec->command[i]);
    c->argv[a] = NULL;
    return 0;
}

int sandbox_executor_init(struct sandbox_cmd *c, const struct sandbox_user *u, const char *dir,
                          const struct sandbox_bind *binds, size_t nr_binds, char *const *command,
                          const char **seen)
{
    size_t a = 0;
    memset(c, 0, sizeof(*c));
    if (nr_binds > SANDBOX_MAX_BINDS)
        return -EINVAL;
    const char *name = u->drop && u->mount_ns > 0 ? shared_name(u, dir) : NULL;
    char *where = NULL;
    if (u->drop && !name)
        return -EINVAL;
    if (name ? asprintf(&where, "%s/%s", u->mount, name) < 0 : !(where = strdup(dir)))
        return -ENOMEM;
    c->owned[c->nr_owned++] = where;
    *seen = where;
    if (name) {
        c->opts.mount_ns = u->mount_ns;
        c->opts.set_ids = true;
        c->opts.uid = u->uid;
        c->opts.gid = u->gid;
    }
    c->opts.no_new_privs = true;
    static const char *const fixed[] = {
        "bwrap", "--die-with-parent", "--unshare-user", "--unshare-net", "--unshare-ipc",
        "--unshare-uts", "--unshare-cgroup-try", "--uid", "0", "--gid", "0",
        /* root of its user namespace, with what that root may do there: make the steps' mount,
         * pid and IPC namespaces (the agent forbids user namespaces inside first) */
        "--cap-add", "ALL", "--dev-bind", "/", "/"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        ARG(fixed[i]);
    /* The steps' root, made once here (a step binds it whole, which costs far less than
     * bubblewrap making each mount for each step): a tmpfs over the empty directory
     * dir/SANDBOX_PREPARED holding /usr and the /etc files bound read-only, the links, dev
     * (bubblewrap's --dev), a mount point for /proc and the binds; then the tmpfs, etc and dev
     * are made read-only, so that nothing a step does there stays for the next build (device
     * nodes are still written through; /dev/shm is each step's own). The binds stay as they are
     * (writable or not): the same directories for the executor's life. */
    char *root = own(c, where, "/" SANDBOX_PREPARED), *to;
    if (!root)
        return -ENOMEM;
    ARG("--tmpfs");
    ARG(root);
    int r = root_args(c, &a, root, false);
    if (r)
        return r;
    if (!(to = own(c, root, "/dev")))
        return -ENOMEM;
    ARG("--dev");
    ARG(to);
    if (!(to = own(c, root, "/proc")))
        return -ENOMEM;
    ARG("--dir");
    ARG(to);
    for (size_t i = 0; i < nr_binds; i++) {
        char *src = own(c, where, "/");
        if (!src || !(src = own(c, src, binds[i].name)) || !(to = own(c, root, binds[i].dest)))
            return -ENOMEM;
        ARG(binds[i].writable ? "--bind" : "--ro-bind");
        ARG(src);
        ARG(to);
    }
    static const char *const ro[] = {"/dev", "/etc", ""};
    for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++) {
        if (!(to = own(c, root, ro[i])))
            return -ENOMEM;
        ARG("--remount-ro");
        ARG(to);
    }
    ARG("--setenv");
    ARG("SLIPWAY_EXECUTOR");
    char *ws = NULL; /* named as a step's sandbox names its workspace */
    if (asprintf(&ws, "%s/ws", dir) < 0)
        return -ENOMEM;
    c->owned[c->nr_owned++] = ws;
    ARG(ws);
    ARG("--");
    for (size_t i = 0; command[i]; i++)
        ARG(command[i]);
    c->argv[a] = NULL;
    return 0;
}

#undef ARG

int sandbox_seccomp_write(int fd)
{
    static const int denied[] = {SCMP_SYS(add_key), SCMP_SYS(keyctl), SCMP_SYS(request_key)};
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int r = ctx ? 0 : -ENOMEM;
    /* 32-bit programs go through the same filter (another architecture's calls kill them) */
    if (!r && seccomp_arch_native() == SCMP_ARCH_X86_64) {
        seccomp_arch_add(ctx, SCMP_ARCH_X86);
        seccomp_arch_add(ctx, SCMP_ARCH_X32);
    }
    for (size_t i = 0; !r && i < sizeof(denied) / sizeof(denied[0]); i++)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), denied[i], 0);
    if (!r)
        r = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    return r;
}

void sandbox_cmd_release(struct sandbox_cmd *c)
{
    for (size_t i = 0; i < c->nr_owned; i++)
        free(c->owned[i]);
    c->nr_owned = 0;
}
