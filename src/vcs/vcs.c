/* vcs — the apps' bare git repositories through libgit2: create, open (one handle per thread per
 * path), list branches, walk first-parent history with cached revision numbers, find version tags.
 * See vcs.h. It does not run git, speak HTTP or log: errors are returned as -errno.
 */
#include "vcs/vcs.h"

#include "base/crypto.h"
#include "base/strbuf.h"
#include "base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "base/banned.h"

#define THREAD_REPOS       16                  /* open repositories kept per thread */
#define NUMBERS_MAX        (2u << 20)          /* revision numbers cached in the whole process */
#define NUMBERS_MIN_SLOTS  64                  /* first hash table size of a repository */
#define BRANCH_NAME_MAX    255                 /* bytes */
#define REPO_MAX_AGE_NS    (60 * 1000000000LL) /* then a thread's handle is opened again */
#define GIT_CACHE_BYTES    (64 << 20)          /* libgit2's object cache, all repositories */
#define TAG_ANSWERS        128                 /* per handle: enough for a branch listing */
#define VERSION_PARTS_MAX  4                   /* "1.2.3" or "1.2.3.4" */
#define VERSION_DIGITS_MAX 18                  /* per part, so a part always fits in int64_t */
#define REFS_HEADS         "refs/heads/"
#define REFS_TAGS          "refs/tags/"

/* --- revision numbers: one hash map (commit id -> number) per repository path --------------- */

struct number_slot {
    unsigned char oid[GIT_OID_RAWSZ];
    uint32_t number; /* 0: empty slot */
};

struct number_map {
    struct number_map *next;
    char *path;
    struct number_slot *slots;
    size_t nr_slots; /* 0 or a power of two; at most 3/4 full */
    size_t nr_numbers;
};

/* Maps are created on first open of a path and live until vcs_shutdown(), so a vcs_repo may keep
 * a pointer to its map; only their tables are cleared. */
static struct {
    pthread_mutex_t lock;
    struct number_map *maps;
    size_t nr_numbers; /* over all maps; at most NUMBERS_MAX */
    uint64_t seed;     /* commit ids are chosen by whoever pushes: keep the slot unpredictable */
} numbers = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t number_hash(const unsigned char *oid)
{
    uint64_t h;
    memcpy(&h, oid, sizeof(h));
    h ^= numbers.seed;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (size_t)h;
}

/* The slot holding `oid`, or the empty slot where it belongs. The table must not be full. */
static struct number_slot *number_slot(struct number_slot *slots, size_t nr_slots,
                                       const unsigned char *oid)
{
    size_t mask = nr_slots - 1;
    for (size_t i = number_hash(oid) & mask;; i = (i + 1) & mask) {
        struct number_slot *s = &slots[i];
        if (!s->number || !memcmp(s->oid, oid, GIT_OID_RAWSZ))
            return s;
    }
}

/* Caller holds numbers.lock. */
static void number_map_clear(struct number_map *map)
{
    numbers.nr_numbers -= map->nr_numbers;
    free(map->slots);
    map->slots = NULL;
    map->nr_slots = 0;
    map->nr_numbers = 0;
}

/* Makes room for `extra` more numbers. Caller holds numbers.lock. False if out of memory. */
static bool number_map_reserve(struct number_map *map, size_t extra)
{
    size_t want = map->nr_numbers + extra;
    size_t nr_slots = map->nr_slots ? map->nr_slots : NUMBERS_MIN_SLOTS;
    while (want > nr_slots / 4 * 3)
        nr_slots *= 2;
    if (nr_slots == map->nr_slots)
        return true;
    struct number_slot *slots = calloc(nr_slots, sizeof(*slots));
    if (!slots)
        return false;
    for (size_t i = 0; i < map->nr_slots; i++) {
        if (map->slots[i].number)
            *number_slot(slots, nr_slots, map->slots[i].oid) = map->slots[i];
    }
    free(map->slots);
    map->slots = slots;
    map->nr_slots = nr_slots;
    return true;
}

static bool number_get(struct number_map *map, const git_oid *oid, int64_t *out)
{
    bool found = false;
    pthread_mutex_lock(&numbers.lock);
    if (map->nr_slots) {
        struct number_slot *s = number_slot(map->slots, map->nr_slots, oid->id);
        if (s->number) {
            *out = s->number;
            found = true;
        }
    }
    pthread_mutex_unlock(&numbers.lock);
    return found;
}

/* Caches chain[i] -> base + len - i (chain[0] is the newest commit). Best effort: when memory or
 * the cap runs out, fewer numbers are cached and they are computed again later. */
static void number_put_chain(struct number_map *map, const git_oid *chain, size_t len, int64_t base)
{
    if (base + (int64_t)len > (int64_t)UINT32_MAX)
        return;
    size_t nr_put = len < NUMBERS_MAX ? len : NUMBERS_MAX; /* the newest ones are asked most */
    pthread_mutex_lock(&numbers.lock);
    if (numbers.nr_numbers + nr_put > NUMBERS_MAX)
        number_map_clear(map);
    if (numbers.nr_numbers + nr_put > NUMBERS_MAX) {
        for (struct number_map *m = numbers.maps; m; m = m->next)
            number_map_clear(m);
    }
    if (number_map_reserve(map, nr_put)) {
        for (size_t i = 0; i < nr_put; i++) {
            struct number_slot *s = number_slot(map->slots, map->nr_slots, chain[i].id);
            if (s->number)
                continue;
            memcpy(s->oid, chain[i].id, GIT_OID_RAWSZ);
            s->number = (uint32_t)(base + (int64_t)(len - i));
            map->nr_numbers++;
            numbers.nr_numbers++;
        }
    }
    pthread_mutex_unlock(&numbers.lock);
}

/* Finds or creates the map of `path`; NULL if out of memory. */
static struct number_map *number_map_get(const char *path)
{
    struct number_map *map;
    pthread_mutex_lock(&numbers.lock);
    for (map = numbers.maps; map; map = map->next) {
        if (!strcmp(map->path, path))
            goto out;
    }
    map = calloc(1, sizeof(*map));
    if (!map)
        goto out;
    map->path = strdup(path);
    if (!map->path) {
        free(map);
        map = NULL;
        goto out;
    }
    map->next = numbers.maps;
    numbers.maps = map;
out:
    pthread_mutex_unlock(&numbers.lock);
    return map;
}

static void number_maps_free(void)
{
    pthread_mutex_lock(&numbers.lock);
    while (numbers.maps) {
        struct number_map *map = numbers.maps;
        numbers.maps = map->next;
        free(map->slots);
        free(map->path);
        free(map);
    }
    numbers.nr_numbers = 0;
    pthread_mutex_unlock(&numbers.lock);
}

/* --- per-thread repository handles ----------------------------------------------------------- */

/* What statx says of a file or directory, to notice that it was replaced or changed. */
struct file_stamp {
    bool exists;
    bool is_dir;
    uint64_t ino, size;
    uint32_t dev_major, dev_minor;
    struct statx_timestamp btime; /* zero if the file system keeps no birth time */
    struct statx_timestamp mtime;
};

struct tag_candidate {
    char *name; /* e.g. "1.0.0.12" */
    int64_t parts[VERSION_PARTS_MAX];
    git_oid target; /* what the tag ref points at: a commit or a tag object */
    int state;      /* 0: not resolved yet; 1: commit and number known; -1: not usable */
    git_oid commit;
    int64_t number;
};

/* The version tags of a repository, highest version first, resolved to commits lazily. */
struct tag_set {
    struct tag_candidate *items;
    size_t nr, alloc;
};

/* Reading every tag ref costs a few syscalls per loose tag, and a repository gets a tag per build:
 * a handle keeps its tag set until refs/tags or packed-refs change (refs are written by renaming a
 * lock file over them, which changes the directory). */
struct tag_cache {
    char *dir_path;    /* <repo>/refs/tags */
    char *packed_path; /* <repo>/packed-refs */
    struct file_stamp dir, packed;
    bool loaded;
    bool racy; /* a stamp was too recent to tell a later change in the same clock tick apart */
    struct tag_set set;
    struct tag_answer {
        git_oid head;
        const char *version; /* a name in `set`, or "" */
    } answers[TAG_ANSWERS];  /* latest_tagged_version() of recent heads, replaced in turn */
    size_t nr_answers, next_answer;
};

struct vcs_repo {
    char *path; /* NULL: free slot */
    git_repository *git;
    git_odb *odb;
    struct number_map *numbers;
    /* A repository deleted and created again at the same path (the inode number may well be
     * reused, not the birth time) must not be read through the old handle's open pack files. */
    struct file_stamp dir;
    struct tag_cache tags;
    /* Reopened after REPO_MAX_AGE_NS: libgit2 never forgets a pack file once seen, so a long-lived
     * handle would keep the packs deleted by each `git gc` open (fds and disk space). */
    int64_t opened_ns;
    uint64_t last_use;
};

/* Heap-allocated and listed so that vcs_shutdown() can close the handles of threads that are still
 * alive; a thread that ends closes its own through the key's destructor. */
struct thread_repos {
    struct vcs_repo repos[THREAD_REPOS];
    uint64_t clock;
    struct thread_repos *next;
    struct thread_repos **pprev;
};

static struct {
    pthread_mutex_t lock;
    struct thread_repos *list;
    pthread_key_t key;
    atomic_bool initialized;
    atomic_uint_fast64_t generation; /* bumped by vcs_shutdown(): older thread pointers are gone */
} threads = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local struct thread_repos *this_thread;
static _Thread_local uint_fast64_t this_thread_generation;

/* Fills *out; 0, -ENOENT (out->exists is false) or -EIO. */
static int file_stamp_get(const char *path, struct file_stamp *out)
{
    struct statx stx;
    memset(out, 0, sizeof(*out));
    if (statx(AT_FDCWD, path, 0, STATX_TYPE | STATX_INO | STATX_SIZE | STATX_MTIME | STATX_BTIME,
              &stx) < 0)
        return errno == ENOENT || errno == ENOTDIR ? -ENOENT : -EIO;
    out->exists = true;
    out->is_dir = S_ISDIR(stx.stx_mode);
    out->ino = stx.stx_ino;
    out->size = stx.stx_size;
    out->dev_major = stx.stx_dev_major;
    out->dev_minor = stx.stx_dev_minor;
    if (stx.stx_mask & STATX_BTIME)
        out->btime = stx.stx_btime;
    out->mtime = stx.stx_mtime;
    return 0;
}

static bool statx_time_equal(const struct statx_timestamp *a, const struct statx_timestamp *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* Same directory (not: same contents). */
static bool file_stamp_same_file(const struct file_stamp *a, const struct file_stamp *b)
{
    return a->exists == b->exists && a->ino == b->ino && a->dev_major == b->dev_major &&
           a->dev_minor == b->dev_minor && statx_time_equal(&a->btime, &b->btime);
}

/* Same file, not changed. */
static bool file_stamp_unchanged(const struct file_stamp *a, const struct file_stamp *b)
{
    return file_stamp_same_file(a, b) && a->size == b->size &&
           statx_time_equal(&a->mtime, &b->mtime);
}

static void tag_set_release(struct tag_set *set)
{
    for (size_t i = 0; i < set->nr; i++)
        free(set->items[i].name);
    free(set->items);
    memset(set, 0, sizeof(*set));
}

static void repo_close(struct vcs_repo *repo)
{
    tag_set_release(&repo->tags.set);
    free(repo->tags.dir_path);
    free(repo->tags.packed_path);
    git_odb_free(repo->odb);
    git_repository_free(repo->git);
    free(repo->path);
    memset(repo, 0, sizeof(*repo));
}

/* Caller holds threads.lock. */
static void thread_repos_free_locked(struct thread_repos *t)
{
    *t->pprev = t->next;
    if (t->next)
        t->next->pprev = t->pprev;
    for (size_t i = 0; i < THREAD_REPOS; i++)
        repo_close(&t->repos[i]);
    free(t);
}

static void thread_repos_destroy(void *p)
{
    pthread_mutex_lock(&threads.lock);
    thread_repos_free_locked(p);
    pthread_mutex_unlock(&threads.lock);
}

static struct thread_repos *thread_repos_get(void)
{
    uint_fast64_t generation = atomic_load(&threads.generation);
    if (this_thread && this_thread_generation == generation)
        return this_thread;
    struct thread_repos *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    pthread_mutex_lock(&threads.lock);
    t->next = threads.list;
    if (t->next)
        t->next->pprev = &t->next;
    t->pprev = &threads.list;
    threads.list = t;
    pthread_mutex_unlock(&threads.lock);
    /* Without the key the handles are still closed by vcs_shutdown(). */
    (void)pthread_setspecific(threads.key, t);
    this_thread = t;
    this_thread_generation = generation;
    return t;
}

/* --- library setup --------------------------------------------------------------------------- */

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;

static int init_locked(void);

int vcs_init(void)
{
    if (atomic_load(&threads.initialized))
        return 0;
    pthread_mutex_lock(&init_lock);
    int r = atomic_load(&threads.initialized) ? 0 : init_locked();
    pthread_mutex_unlock(&init_lock);
    return r;
}

static int init_locked(void)
{
    if (git_libgit2_init() < 0)
        return -EIO;
    git_libgit2_opts(GIT_OPT_SET_CACHE_MAX_SIZE, (ssize_t)GIT_CACHE_BYTES);
    /* Objects are hashed when they come in (receive-pack) and git does not hash them again on
     * each read; libgit2 would, which doubles the cost of numbering a long history. */
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
    /* No GIT_OPT_SET_MWINDOW_FILE_LIMIT: a pack file libgit2 closed could not be opened again
     * once `git gc` (run by receive-pack) has deleted it. */
    int r = pthread_key_create(&threads.key, thread_repos_destroy);
    if (r) {
        git_libgit2_shutdown();
        return -r;
    }
    uint64_t seed;
    if (crypto_random(&seed, sizeof(seed)))
        seed = (uint64_t)time_mono_ns() ^ ((uint64_t)getpid() << 32);
    pthread_mutex_lock(&numbers.lock);
    numbers.seed = seed;
    pthread_mutex_unlock(&numbers.lock);
    atomic_store(&threads.initialized, true);
    return 0;
}

void vcs_shutdown(void)
{
    pthread_mutex_lock(&init_lock);
    if (!atomic_load(&threads.initialized)) {
        pthread_mutex_unlock(&init_lock);
        return;
    }
    pthread_key_delete(threads.key);
    pthread_mutex_lock(&threads.lock);
    while (threads.list)
        thread_repos_free_locked(threads.list);
    atomic_fetch_add(&threads.generation, 1);
    pthread_mutex_unlock(&threads.lock);
    this_thread = NULL;
    number_maps_free();
    atomic_store(&threads.initialized, false);
    git_libgit2_shutdown();
    pthread_mutex_unlock(&init_lock);
}

void vcs_thread_release(void)
{
    if (!this_thread || this_thread_generation != atomic_load(&threads.generation))
        return;
    (void)pthread_setspecific(threads.key, NULL);
    thread_repos_destroy(this_thread);
    this_thread = NULL;
}

/* --- repositories ---------------------------------------------------------------------------- */

int vcs_repo_create(const char *path, const char *default_branch)
{
    struct strbuf tmp = STRBUF_INIT;
    git_repository *git = NULL;
    bool tmp_made = false;
    struct stat st;
    int r;

    if (!vcs_branch_name_valid(default_branch) || !*path)
        return -EINVAL;
    if (vcs_init())
        return -EIO;
    if (!lstat(path, &st))
        return -EEXIST;
    if (errno != ENOENT)
        return -errno;

    const char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        strbuf_add(&tmp, path, (size_t)(slash - path));
        if (!strbuf_ok(&tmp)) {
            r = -ENOMEM;
            goto out;
        }
        r = fs_mkdirs(tmp.buf, 0755);
        if (r)
            goto out;
        strbuf_reset(&tmp);
    }

    /* Built under a temporary name and renamed into place, so that a crash never leaves a
     * half-made repository at `path`. */
    strbuf_addf(&tmp, "%s.tmp-XXXXXX", path);
    if (!strbuf_ok(&tmp)) {
        r = -ENOMEM;
        goto out;
    }
    if (!mkdtemp(tmp.buf)) {
        r = -errno;
        goto out;
    }
    tmp_made = true;

    git_repository_init_options opts;
    git_repository_init_options_init(&opts, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    opts.flags =
        GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
    opts.initial_head = default_branch;
    if (git_repository_init_ext(&git, tmp.buf, &opts)) {
        r = -EIO;
        goto out;
    }
    git_repository_free(git);
    git = NULL;

    if (renameat2(AT_FDCWD, tmp.buf, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
        r = -errno;
        goto out;
    }
    tmp_made = false;
    r = 0;
out:
    git_repository_free(git);
    if (tmp_made)
        fs_remove_tree(tmp.buf);
    strbuf_release(&tmp);
    return r;
}

int vcs_open(const char *path, struct vcs_repo **out)
{
    struct vcs_repo fresh = {0};
    struct file_stamp dir;
    int r;

    if (vcs_init())
        return -EIO;
    struct thread_repos *t = thread_repos_get();
    if (!t)
        return -ENOMEM;
    r = file_stamp_get(path, &dir);
    if (r)
        return r;
    if (!dir.is_dir)
        return -ENOENT;
    int64_t now = time_mono_ns();

    struct vcs_repo *slot = NULL;
    for (size_t i = 0; i < THREAD_REPOS; i++) {
        struct vcs_repo *repo = &t->repos[i];
        if (!repo->path || strcmp(repo->path, path))
            continue;
        if (file_stamp_same_file(&repo->dir, &dir) && now - repo->opened_ns < REPO_MAX_AGE_NS) {
            repo->last_use = ++t->clock;
            *out = repo;
            return 0;
        }
        /* Replaced on disk, or old: opened again in the same slot, so that a pointer the caller
         * still holds for this path stays good. */
        repo_close(repo);
        slot = repo;
        break;
    }

    int e = git_repository_open_bare(&fresh.git, path);
    if (e) {
        r = e == GIT_ENOTFOUND ? -ENOENT : -EIO;
        goto out;
    }
    if (git_repository_odb(&fresh.odb, fresh.git)) {
        r = -EIO;
        goto out;
    }
    const char *gitdir = git_repository_path(fresh.git); /* absolute, ends with '/' */
    fresh.path = strdup(path);
    fresh.numbers = number_map_get(path);
    if (asprintf(&fresh.tags.dir_path, "%srefs/tags", gitdir) < 0)
        fresh.tags.dir_path = NULL;
    if (asprintf(&fresh.tags.packed_path, "%spacked-refs", gitdir) < 0)
        fresh.tags.packed_path = NULL;
    if (!fresh.path || !fresh.numbers || !fresh.tags.dir_path || !fresh.tags.packed_path) {
        r = -ENOMEM;
        goto out;
    }
    fresh.dir = dir;
    fresh.opened_ns = now;
    fresh.last_use = ++t->clock;

    /* Else a free slot, else the least recently used. */
    for (size_t i = 0; i < THREAD_REPOS && (!slot || slot->path); i++) {
        struct vcs_repo *repo = &t->repos[i];
        if (!slot || !repo->path || repo->last_use < slot->last_use)
            slot = repo;
    }
    repo_close(slot);
    *slot = fresh;
    memset(&fresh, 0, sizeof(fresh));
    *out = slot;
    r = 0;
out:
    repo_close(&fresh);
    return r;
}

/* --- commits and numbers --------------------------------------------------------------------- */

void vcs_commit_release(struct vcs_commit *c)
{
    if (!c)
        return;
    free(c->message);
    free(c->author_name);
    free(c->author_email);
    c->message = c->author_name = c->author_email = NULL;
}

void vcs_branch_release(struct vcs_branch *b)
{
    if (!b)
        return;
    free(b->name);
    b->name = NULL;
    vcs_commit_release(&b->head);
    free(b->latest_tagged_version);
    b->latest_tagged_version = NULL;
}

/* Fills *out with copies of the commit's fields; -ENOMEM leaves nothing to release. */
static int commit_fill(struct vcs_commit *out, const git_commit *commit, int64_t number)
{
    const git_signature *author = git_commit_author(commit);
    const char *message = git_commit_message(commit);

    memset(out, 0, sizeof(*out));
    git_oid_tostr(out->id, sizeof(out->id), git_commit_id(commit));
    out->number = number;
    out->time_s = git_commit_time(commit);
    out->message = strdup(message ? message : "");
    out->author_name = strdup(author && author->name ? author->name : "");
    out->author_email = strdup(author && author->email ? author->email : "");
    if (!out->message || !out->author_name || !out->author_email) {
        vcs_commit_release(out);
        return -ENOMEM;
    }
    return 0;
}

/* A growable array of commit ids. */
struct oid_list {
    git_oid *oids;
    size_t nr, alloc;
};

static int oid_list_push(struct oid_list *list, const git_oid *oid)
{
    if (list->nr == list->alloc) {
        size_t alloc = list->alloc ? list->alloc * 2 : 64;
        git_oid *oids = reallocarray(list->oids, alloc, sizeof(*oids));
        if (!oids)
            return -ENOMEM;
        list->oids = oids;
        list->alloc = alloc;
    }
    list->oids[list->nr++] = *oid;
    return 0;
}

/* Puts the first parent of commit `oid` in *parent; 1 if it is a root commit, 0, or -EIO.
 * Numbering a long history is mostly this, so it reads the raw object, whose first lines are
 * "tree <hex>" then any "parent <hex>", instead of parsing a whole git_commit: ~30% faster. */
static int first_parent(struct vcs_repo *repo, const git_oid *oid, git_oid *parent)
{
    static const char tree[] = "tree ", parent_tag[] = "parent ";
    const size_t tree_len = sizeof(tree) - 1 + GIT_OID_HEXSZ + 1;
    const size_t parent_len = sizeof(parent_tag) - 1 + GIT_OID_HEXSZ + 1;
    git_odb_object *obj;
    int r;

    if (git_odb_read(&obj, repo->odb, oid))
        return -EIO;
    const char *data = git_odb_object_data(obj);
    size_t len = git_odb_object_size(obj);
    if (git_odb_object_type(obj) != GIT_OBJECT_COMMIT || len < tree_len ||
        memcmp(data, tree, sizeof(tree) - 1) || data[tree_len - 1] != '\n')
        r = -EIO;
    else if (len < tree_len + parent_len ||
             memcmp(data + tree_len, parent_tag, sizeof(parent_tag) - 1))
        r = 1;
    else if (data[tree_len + parent_len - 1] != '\n' ||
             git_oid_fromstrn(parent, data + tree_len + sizeof(parent_tag) - 1, GIT_OID_HEXSZ))
        r = -EIO;
    else
        r = 0;
    git_odb_object_free(obj);
    return r;
}

/* The revision number of commit `oid`: walks first parents until a commit whose number is cached
 * (or the root), then caches the numbers of the commits walked. */
static int number_of(struct vcs_repo *repo, const git_oid *oid, int64_t *out)
{
    struct oid_list chain = {0};
    git_oid cur = *oid;
    int64_t base = 0;
    int r;

    while (!number_get(repo->numbers, &cur, &base)) {
        r = oid_list_push(&chain, &cur);
        if (r)
            goto out;
        r = first_parent(repo, &cur, &cur);
        if (r < 0)
            goto out;
        if (r == 1)
            break;
    }
    if (chain.nr)
        number_put_chain(repo->numbers, chain.oids, chain.nr, base);
    *out = base + (int64_t)chain.nr;
    r = 0;
out:
    free(chain.oids);
    return r;
}

/* --- version tags ---------------------------------------------------------------------------- */

/* Parses "1.2.3" or "1.2.3.4" (decimal digits only); a missing fourth part is -1, so that
 * "1.2.3" < "1.2.3.0". */
static bool version_parse(const char *s, int64_t parts[VERSION_PARTS_MAX])
{
    size_t nr_parts = 0;
    for (;;) {
        size_t nr_digits = 0;
        int64_t v = 0;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (++nr_digits > VERSION_DIGITS_MAX)
                return false;
            v = v * 10 + (*s - '0');
        }
        if (!nr_digits || nr_parts == VERSION_PARTS_MAX)
            return false;
        parts[nr_parts++] = v;
        if (!*s)
            break;
        if (*s++ != '.')
            return false;
    }
    if (nr_parts < 3)
        return false;
    for (; nr_parts < VERSION_PARTS_MAX; nr_parts++)
        parts[nr_parts] = -1;
    return true;
}

static int tag_candidate_cmp(const void *pa, const void *pb)
{
    const struct tag_candidate *a = pa, *b = pb;
    for (size_t i = 0; i < VERSION_PARTS_MAX; i++) {
        if (a->parts[i] != b->parts[i])
            return a->parts[i] > b->parts[i] ? -1 : 1;
    }
    return strcmp(a->name, b->name); /* "1.0.01" vs "1.0.1": any fixed order */
}

/* Adds the tag `ref` to the set if its name is a version. */
static int tag_set_add(struct tag_set *set, git_reference *ref)
{
    const char *name = git_reference_name(ref) + strlen(REFS_TAGS);
    struct tag_candidate t = {0};
    git_reference *resolved = NULL;
    int r = 0;

    if (!version_parse(name, t.parts))
        goto out;
    if (git_reference_type(ref) == GIT_REFERENCE_SYMBOLIC) {
        if (git_reference_resolve(&resolved, ref))
            goto out; /* dangling: not a version of anything */
        ref = resolved;
    }
    t.target = *git_reference_target(ref);
    if (set->nr == set->alloc) {
        size_t alloc = set->alloc ? set->alloc * 2 : 16;
        struct tag_candidate *items = reallocarray(set->items, alloc, sizeof(*items));
        if (!items) {
            r = -ENOMEM;
            goto out;
        }
        set->items = items;
        set->alloc = alloc;
    }
    t.name = strdup(name);
    if (!t.name) {
        r = -ENOMEM;
        goto out;
    }
    set->items[set->nr++] = t;
out:
    git_reference_free(resolved);
    return r;
}

static int tag_set_load(struct vcs_repo *repo, struct tag_set *set)
{
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    int r, e;

    if (git_reference_iterator_glob_new(&it, repo->git, REFS_TAGS "*")) {
        r = -EIO;
        goto out;
    }
    while (!(e = git_reference_next(&ref, it))) {
        r = tag_set_add(set, ref);
        git_reference_free(ref);
        if (r)
            goto out;
    }
    if (e != GIT_ITEROVER) {
        r = -EIO;
        goto out;
    }
    if (set->nr > 1)
        qsort(set->items, set->nr, sizeof(*set->items), tag_candidate_cmp);
    r = 0;
out:
    git_reference_iterator_free(it);
    if (r)
        tag_set_release(set);
    return r;
}

/* Makes repo->tags current: loaded again only when the tag refs may have changed. */
static int tag_set_get(struct vcs_repo *repo)
{
    struct tag_cache *cache = &repo->tags;
    struct tag_set set = {0};
    struct file_stamp dir, packed;
    int r;

    /* Stamps first: a change made while loading is then seen next time. */
    if (file_stamp_get(cache->dir_path, &dir) == -EIO ||
        file_stamp_get(cache->packed_path, &packed) == -EIO)
        return -EIO;
    if (cache->loaded && !cache->racy && file_stamp_unchanged(&dir, &cache->dir) &&
        file_stamp_unchanged(&packed, &cache->packed))
        return 0;
    int64_t now_s = time_now_ms() / 1000;
    r = tag_set_load(repo, &set);
    if (r)
        return r;
    tag_set_release(&cache->set);
    cache->set = set;
    cache->nr_answers = cache->next_answer = 0;
    cache->dir = dir;
    cache->packed = packed;
    cache->loaded = true;
    /* File times come from a coarse clock: a second change within the same tick as the one
     * stamped would go unseen, so a recent stamp is not trusted. */
    cache->racy = dir.mtime.tv_sec + 2 > now_s || packed.mtime.tv_sec + 2 > now_s;
    return 0;
}

/* Peels the tag to a commit and numbers it; false if the tag is not usable (e.g. it names a tree
 * or a missing object): such a tag is simply not a candidate. */
static bool tag_resolve(struct vcs_repo *repo, struct tag_candidate *t)
{
    git_object *obj = NULL, *peeled = NULL;

    if (t->state)
        return t->state > 0;
    if (git_object_lookup(&obj, repo->git, &t->target, GIT_OBJECT_ANY) ||
        git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT)) {
        t->state = -1;
    } else if (!number_of(repo, git_object_id(peeled), &t->number)) {
        t->commit = *git_object_id(peeled);
        t->state = 1;
    } /* else out of memory or a broken history: try again next time */
    git_object_free(peeled);
    git_object_free(obj);
    return t->state > 0;
}

/* The highest version whose commit is on the first-parent history of `head` (a copy in *out, ""
 * if none), from the tag set tag_set_get() loaded. A commit with number n can only be the one at
 * depth head_number - n of that history, so each candidate costs one comparison, and the history
 * is walked once, only as deep as the candidates need; answers are kept per head. */
static int latest_tagged_version(struct vcs_repo *repo, const git_oid *head, int64_t head_number,
                                 char **out)
{
    struct tag_cache *cache = &repo->tags;
    struct oid_list chain = {0};
    const char *found = "";
    bool at_root = false, complete = true;
    int r;

    for (size_t i = 0; i < cache->nr_answers; i++) {
        if (git_oid_equal(&cache->answers[i].head, head)) {
            found = cache->answers[i].version;
            goto done;
        }
    }
    for (size_t i = 0; i < cache->set.nr; i++) {
        struct tag_candidate *t = &cache->set.items[i];
        if (!tag_resolve(repo, t)) {
            complete &= t->state != 0;
            continue;
        }
        if (t->number > head_number)
            continue;
        size_t depth = (size_t)(head_number - t->number);
        if (!chain.nr) {
            r = oid_list_push(&chain, head);
            if (r)
                goto out;
        }
        while (chain.nr <= depth && !at_root) {
            git_oid parent;
            r = first_parent(repo, &chain.oids[chain.nr - 1], &parent);
            if (r < 0)
                goto out;
            if (r == 1) {
                at_root = true;
                break;
            }
            r = oid_list_push(&chain, &parent);
            if (r)
                goto out;
        }
        if (depth < chain.nr && git_oid_equal(&chain.oids[depth], &t->commit)) {
            found = t->name;
            break;
        }
    }
    if (complete) {
        cache->answers[cache->next_answer] = (struct tag_answer){.head = *head, .version = found};
        cache->next_answer = (cache->next_answer + 1) % TAG_ANSWERS;
        if (cache->nr_answers < TAG_ANSWERS)
            cache->nr_answers++;
    }
done:
    *out = strdup(found);
    r = *out ? 0 : -ENOMEM;
out:
    free(chain.oids);
    return r;
}

/* --- branches -------------------------------------------------------------------------------- */

bool vcs_branch_name_valid(const char *name)
{
    int valid = 0;
    if (!name || !*name || strnlen(name, BRANCH_NAME_MAX + 1) > BRANCH_NAME_MAX || vcs_init())
        return false;
    /* git refuses DEL like the other control characters; libgit2 lets it through. */
    if (strchr(name, 0x7f))
        return false;
    /* Also refuses "HEAD" and a leading '-', like `git branch`. */
    if (git_branch_name_is_valid(&valid, name))
        return false;
    return valid;
}

/* The commit that branch `name` points at. -ENOENT if there is no such branch. */
static int branch_resolve(struct vcs_repo *repo, const char *name, git_oid *out)
{
    struct strbuf refname = STRBUF_INIT;
    git_reference *ref = NULL;
    git_object *commit = NULL;
    int r, e;

    if (!vcs_branch_name_valid(name))
        return -ENOENT;
    strbuf_addf(&refname, REFS_HEADS "%s", name);
    if (!strbuf_ok(&refname)) {
        r = -ENOMEM;
        goto out;
    }
    e = git_reference_lookup(&ref, repo->git, refname.buf);
    if (!e)
        e = git_reference_peel(&commit, ref, GIT_OBJECT_COMMIT);
    if (e) {
        /* Unknown, dangling, or not naming a commit: vcs_branch_each() does not list it either. */
        r = e == GIT_ENOTFOUND || e == GIT_EINVALIDSPEC || e == GIT_EPEEL ? -ENOENT : -EIO;
        goto out;
    }
    *out = *git_object_id(commit);
    r = 0;
out:
    git_object_free(commit);
    git_reference_free(ref);
    strbuf_release(&refname);
    return r;
}

/* Fills *out (caller releases) for branch `name` whose head is `head`; tag_set_get() has been
 * called. */
static int branch_fill(struct vcs_repo *repo, const char *name, const git_oid *head,
                       struct vcs_branch *out)
{
    struct vcs_branch b = {0};
    git_commit *commit = NULL;
    int64_t number;
    int r;

    if (git_commit_lookup(&commit, repo->git, head)) {
        r = -EIO;
        goto out;
    }
    r = number_of(repo, head, &number);
    if (r)
        goto out;
    r = commit_fill(&b.head, commit, number);
    if (r)
        goto out;
    r = latest_tagged_version(repo, head, number, &b.latest_tagged_version);
    if (r)
        goto out;
    b.name = strdup(name);
    if (!b.name) {
        r = -ENOMEM;
        goto out;
    }
    *out = b;
    memset(&b, 0, sizeof(b));
    r = 0;
out:
    vcs_branch_release(&b);
    git_commit_free(commit);
    return r;
}

int vcs_branch_exists(struct vcs_repo *repo, const char *name, char head_id[VCS_OID_HEX])
{
    git_oid head;
    int r = branch_resolve(repo, name, &head);
    if (!r && head_id)
        git_oid_tostr(head_id, VCS_OID_HEX, &head);
    return r;
}

int vcs_ref_get(struct vcs_repo *repo, const char *refname, char oid[VCS_OID_HEX])
{
    git_oid id;
    int e = git_reference_name_to_id(&id, repo->git, refname);
    if (e)
        return e == GIT_ENOTFOUND || e == GIT_EINVALIDSPEC ? -ENOENT : -EIO;
    git_oid_tostr(oid, VCS_OID_HEX, &id);
    return 0;
}

int vcs_branch_get(struct vcs_repo *repo, const char *name, struct vcs_branch *out)
{
    git_oid head;
    int r;

    r = branch_resolve(repo, name, &head);
    if (r)
        return r;
    r = tag_set_get(repo);
    if (r)
        return r;
    return branch_fill(repo, name, &head, out);
}

struct branch_head {
    char *name;
    git_oid head;
};

static int branch_head_cmp(const void *pa, const void *pb)
{
    const struct branch_head *a = pa, *b = pb;
    return strcmp(a->name, b->name);
}

int vcs_branch_each(struct vcs_repo *repo, int (*fn)(const struct vcs_branch *, void *), void *arg)
{
    struct branch_head *heads = NULL;
    size_t nr_heads = 0, alloc_heads = 0;
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    git_object *commit = NULL;
    int r, e;

    /* A glob reads only refs/heads (the plain iterator would stat every tag, too); its '*'
     * matches '/' as well. */
    if (git_reference_iterator_glob_new(&it, repo->git, REFS_HEADS "*")) {
        r = -EIO;
        goto out;
    }
    while (!(e = git_reference_next(&ref, it))) {
        /* A ref that names no commit (dangling symbolic ref, a tree) is not listed rather than
         * failing the whole listing. */
        if (git_reference_peel(&commit, ref, GIT_OBJECT_COMMIT))
            goto next;
        if (nr_heads == alloc_heads) {
            size_t alloc = alloc_heads ? alloc_heads * 2 : 16;
            struct branch_head *h = reallocarray(heads, alloc, sizeof(*h));
            if (!h) {
                r = -ENOMEM;
                goto out;
            }
            heads = h;
            alloc_heads = alloc;
        }
        heads[nr_heads].name = strdup(git_reference_name(ref) + strlen(REFS_HEADS));
        if (!heads[nr_heads].name) {
            r = -ENOMEM;
            goto out;
        }
        heads[nr_heads++].head = *git_object_id(commit);
    next:
        git_object_free(commit);
        commit = NULL;
        git_reference_free(ref);
        ref = NULL;
    }
    if (e != GIT_ITEROVER) {
        r = -EIO;
        goto out;
    }
    if (nr_heads > 1)
        qsort(heads, nr_heads, sizeof(*heads), branch_head_cmp);

    r = tag_set_get(repo);
    if (r)
        goto out;
    for (size_t i = 0; i < nr_heads; i++) {
        struct vcs_branch b;
        r = branch_fill(repo, heads[i].name, &heads[i].head, &b);
        if (r)
            goto out;
        r = fn(&b, arg);
        vcs_branch_release(&b);
        if (r)
            goto out;
    }
    r = 0;
out:
    git_object_free(commit);
    git_reference_free(ref);
    git_reference_iterator_free(it);
    for (size_t i = 0; i < nr_heads; i++)
        free(heads[i].name);
    free(heads);
    return r;
}

int vcs_branch_count(struct vcs_repo *repo, size_t *out)
{
    git_reference_iterator *it = NULL;
    const char *name;
    size_t nr = 0;
    int r, e;

    if (git_reference_iterator_glob_new(&it, repo->git, REFS_HEADS "*")) {
        r = -EIO;
        goto out;
    }
    while (!(e = git_reference_next_name(&name, it)))
        nr++;
    if (e != GIT_ITEROVER) {
        r = -EIO;
        goto out;
    }
    *out = nr;
    r = 0;
out:
    git_reference_iterator_free(it);
    return r;
}

static int history_each(struct vcs_repo *repo, const git_oid *head, size_t skip, size_t limit,
                        int (*fn)(const struct vcs_commit *, void *), void *arg);

int vcs_revision_each(struct vcs_repo *repo, const char *branch, size_t skip, size_t limit,
                      int (*fn)(const struct vcs_commit *, void *), void *arg)
{
    git_oid head;
    int r = branch_resolve(repo, branch, &head);
    return r ? r : history_each(repo, &head, skip, limit, fn, arg);
}

int vcs_history_each(struct vcs_repo *repo, const char *head_id, size_t skip, size_t limit,
                     int (*fn)(const struct vcs_commit *, void *), void *arg)
{
    git_oid head;
    if (git_oid_fromstrn(&head, head_id, strnlen(head_id, VCS_OID_HEX)) ||
        strnlen(head_id, VCS_OID_HEX) != VCS_OID_HEX - 1)
        return -EINVAL;
    return history_each(repo, &head, skip, limit, fn, arg);
}

static int history_each(struct vcs_repo *repo, const git_oid *head, size_t skip, size_t limit,
                        int (*fn)(const struct vcs_commit *, void *), void *arg)
{
    git_commit *commit = NULL;
    int64_t head_number = 0;
    git_oid cur = *head;
    int r = 0;

    if (!limit)
        goto out;
    r = number_of(repo, &cur, &head_number);
    if (r)
        goto out;
    if ((uint64_t)head_number <= skip)
        goto out;
    for (size_t index = 0; index < skip; index++) {
        r = first_parent(repo, &cur, &cur);
        if (r) {
            r = r < 0 ? r : -EIO; /* the root cannot come before head_number commits */
            goto out;
        }
    }
    for (size_t index = skip; index - skip < limit; index++) {
        if (git_commit_lookup(&commit, repo->git, &cur)) {
            r = -EIO;
            goto out;
        }
        struct vcs_commit c;
        r = commit_fill(&c, commit, head_number - (int64_t)index);
        if (r)
            goto out;
        r = fn(&c, arg);
        vcs_commit_release(&c);
        if (r)
            goto out;
        if (!git_commit_parentcount(commit))
            break;
        cur = *git_commit_parent_id(commit, 0);
        git_commit_free(commit);
        commit = NULL;
    }
    r = 0;
out:
    git_commit_free(commit);
    return r;
}

/* --- builds: revisions, files, export, tags --------------------------------------------------- */

int vcs_revision_find(struct vcs_repo *repo, const char *branch, const char *revision,
                      struct vcs_commit *out)
{
    git_oid head, cur;
    git_commit *commit = NULL;
    int64_t head_number, number, want;
    int r = branch_resolve(repo, branch, &head);
    if (r)
        return r;
    if ((r = number_of(repo, &head, &head_number)))
        return r;
    size_t len = strlen(revision);
    if (len && len <= 10 && strspn(revision, "0123456789") == len) {
        /* a revision Number on the branch's first-parent history */
        if (parse_i64(revision, 1, head_number, &want))
            return -ENOENT;
        cur = head;
        for (number = head_number; number > want; number--) {
            r = first_parent(repo, &cur, &cur);
            if (r)
                return r < 0 ? r : -EIO;
        }
    } else {
        /* a commit hash, short (at least 4 hex digits) or full, on the branch's history */
        git_object *obj = NULL;
        if (len < 4 || len > 40 || strspn(revision, "0123456789abcdefABCDEF") != len)
            return -ENOENT;
        if (git_oid_fromstrn(&cur, revision, len) ||
            git_object_lookup_prefix(&obj, repo->git, &cur, len, GIT_OBJECT_COMMIT))
            return -ENOENT;
        cur = *git_object_id(obj);
        git_object_free(obj);
        if (!git_oid_equal(&cur, &head) && git_graph_descendant_of(repo->git, &head, &cur) != 1)
            return -ENOENT;
        if ((r = number_of(repo, &cur, &number)))
            return r;
    }
    if (git_commit_lookup(&commit, repo->git, &cur))
        return -EIO;
    r = commit_fill(out, commit, number);
    git_commit_free(commit);
    return r;
}

int vcs_file_read(struct vcs_repo *repo, const char *commit_id, const char *path, size_t max,
                  struct strbuf *out)
{
    git_oid oid;
    git_commit *commit = NULL;
    git_tree *tree = NULL;
    git_tree_entry *entry = NULL;
    git_blob *blob = NULL;
    int r = -EIO;
    if (git_oid_fromstr(&oid, commit_id))
        return -EINVAL;
    if (git_commit_lookup(&commit, repo->git, &oid) || git_commit_tree(&tree, commit))
        goto out;
    if (git_tree_entry_bypath(&entry, tree, path)) {
        r = -ENOENT;
        goto out;
    }
    if (git_tree_entry_type(entry) != GIT_OBJECT_BLOB) {
        r = -EISDIR;
        goto out;
    }
    if (git_blob_lookup(&blob, repo->git, git_tree_entry_id(entry)))
        goto out;
    if ((uint64_t)git_blob_rawsize(blob) > max) {
        r = -EFBIG;
        goto out;
    }
    strbuf_add(out, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
    r = strbuf_ok(out) ? 0 : -ENOMEM;
out:
    git_blob_free(blob);
    git_tree_entry_free(entry);
    git_tree_free(tree);
    git_commit_free(commit);
    return r;
}

int vcs_export(struct vcs_repo *repo, const char *commit_id, const char *dest_dir)
{
    git_oid oid;
    git_commit *commit = NULL;
    git_checkout_options opts;
    int r = 0;
    if (git_oid_fromstr(&oid, commit_id))
        return -EINVAL;
    if (git_commit_lookup(&commit, repo->git, &oid))
        return -EIO;
    git_checkout_options_init(&opts, GIT_CHECKOUT_OPTIONS_VERSION);
    opts.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_DONT_UPDATE_INDEX;
    opts.target_directory = dest_dir;
    opts.disable_filters = 1;
    if (git_checkout_tree(repo->git, (const git_object *)commit, &opts))
        r = -EIO;
    git_commit_free(commit);
    return r;
}

int vcs_tag_lookup(struct vcs_repo *repo, const char *name, char commit_id[VCS_OID_HEX])
{
    struct strbuf refname = STRBUF_INIT;
    git_reference *ref = NULL;
    git_object *commit = NULL;
    int r, e;

    strbuf_addf(&refname, REFS_TAGS "%s", name);
    if (!strbuf_ok(&refname)) {
        r = -ENOMEM;
        goto out;
    }
    e = git_reference_lookup(&ref, repo->git, refname.buf);
    if (e) {
        r = e == GIT_ENOTFOUND || e == GIT_EINVALIDSPEC ? -ENOENT : -EIO;
        goto out;
    }
    /* an annotated tag names its commit through a tag object; a tag of a tree, a blob or a
     * missing object names no commit */
    commit_id[0] = '\0';
    if (!git_reference_peel(&commit, ref, GIT_OBJECT_COMMIT))
        git_oid_tostr(commit_id, VCS_OID_HEX, git_object_id(commit));
    r = 0;
out:
    git_object_free(commit);
    git_reference_free(ref);
    strbuf_release(&refname);
    return r;
}

int vcs_tag(struct vcs_repo *repo, const char *commit_id, const char *name)
{
    git_oid oid, tag;
    git_object *target = NULL;
    if (git_oid_fromstr(&oid, commit_id))
        return -EINVAL;
    if (git_object_lookup(&target, repo->git, &oid, GIT_OBJECT_COMMIT))
        return -EIO;
    int e = git_tag_create_lightweight(&tag, repo->git, name, target, 0);
    git_object_free(target);
    if (e == GIT_EEXISTS)
        return -EEXIST;
    return e ? -EIO : 0;
}
