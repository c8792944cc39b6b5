/* Tests for vcs: repositories are built with the real `git` in a work tree and pushed to a bare
 * repository made by vcs_repo_create(), as `git http-backend` would do on the server.
 */
#include "vcs/vcs.h"

#include "base/util.h"

#include "../helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define GIT "git -c user.name=T -c user.email=t@example.com -c advice.detachedHead=false "

static char *root; /* temp dir of the test */
static char *bare; /* root/repo.git */
static char *work; /* root/work: a work tree whose commits are pushed to bare */

/* The first line of a command's output (caller frees). */
#define sh_line(...) first_line(sh_out(__VA_ARGS__))
static char *first_line(char *out)
{
    cr_assert(out[0], "no output");
    out[strcspn(out, "\n")] = '\0';
    return out;
}

static void commit(const char *message)
{
    sh(GIT "-C %s commit -q --allow-empty -m '%s'", work, message);
}

static char *rev(const char *what)
{
    return sh_line("git -C %s rev-parse '%s'", work, what);
}

static void push(const char *refspec)
{
    sh("git -C %s push -q -f %s '%s' 2>/dev/null", work, bare, refspec);
}

static void setup(void)
{
    /* Keep the host's git configuration out of the tests. */
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    cr_assert_eq(vcs_init(), 0);
    char tmpl[] = "/tmp/test-vcs-XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    root = strdup(tmpl);
    bare = str("%s/repo.git", root);
    work = str("%s/work", root);
    sh("git init -q -b main %s", work);
}

static void teardown(void)
{
    vcs_shutdown();
    fs_remove_tree(root);
    free(root);
    free(bare);
    free(work);
}

TestSuite(vcs, .init = setup, .fini = teardown, .timeout = 60);

static struct vcs_repo *open_bare(void)
{
    struct vcs_repo *repo = NULL;
    cr_assert_eq(vcs_open(bare, &repo), 0);
    cr_assert_not_null(repo);
    return repo;
}

static struct vcs_repo *create_and_open(void)
{
    cr_assert_eq(vcs_repo_create(bare, "main"), 0);
    return open_bare();
}

/* --- collecting callbacks --- */

#define MAX_SEEN 256

struct revisions {
    size_t nr;
    int64_t number[MAX_SEEN];
    char id[MAX_SEEN][VCS_OID_HEX];
    char *message[MAX_SEEN];
};

static int collect_revision(const struct vcs_commit *c, void *arg)
{
    struct revisions *revs = arg;
    cr_assert_lt(revs->nr, MAX_SEEN);
    revs->number[revs->nr] = c->number;
    memcpy(revs->id[revs->nr], c->id, VCS_OID_HEX);
    revs->message[revs->nr] = strdup(c->message);
    revs->nr++;
    return 0;
}

static void revisions_release(struct revisions *revs)
{
    for (size_t i = 0; i < revs->nr; i++)
        free(revs->message[i]);
    revs->nr = 0;
}

static void assert_numbers(struct vcs_repo *repo, const char *branch, size_t skip, size_t limit,
                           const int64_t *want, size_t nr_want)
{
    struct revisions revs = {0};
    cr_assert_eq(vcs_revision_each(repo, branch, skip, limit, collect_revision, &revs), 0);
    cr_assert_eq(revs.nr, nr_want, "branch %s skip %zu limit %zu: %zu revisions, want %zu", branch,
                 skip, limit, revs.nr, nr_want);
    for (size_t i = 0; i < nr_want; i++)
        cr_assert_eq(revs.number[i], want[i], "revision %zu: %lld, want %lld", i,
                     (long long)revs.number[i], (long long)want[i]);
    revisions_release(&revs);
}

struct branches {
    size_t nr;
    size_t stop_after; /* 0: never */
    char *name[MAX_SEEN];
    int64_t number[MAX_SEEN];
    char *tag[MAX_SEEN];
};

static int collect_branch(const struct vcs_branch *b, void *arg)
{
    struct branches *bs = arg;
    cr_assert_lt(bs->nr, MAX_SEEN);
    bs->name[bs->nr] = strdup(b->name);
    bs->number[bs->nr] = b->head.number;
    bs->tag[bs->nr] = strdup(b->latest_tagged_version);
    bs->nr++;
    return bs->nr == bs->stop_after ? 42 : 0;
}

static void branches_release(struct branches *bs)
{
    for (size_t i = 0; i < bs->nr; i++) {
        free(bs->name[i]);
        free(bs->tag[i]);
    }
    bs->nr = 0;
}

static int64_t head_number(struct vcs_repo *repo, const char *branch)
{
    struct vcs_branch b;
    cr_assert_eq(vcs_branch_get(repo, branch, &b), 0, "branch %s", branch);
    int64_t n = b.head.number;
    vcs_branch_release(&b);
    return n;
}

static char *latest_tag(struct vcs_repo *repo, const char *branch)
{
    struct vcs_branch b;
    cr_assert_eq(vcs_branch_get(repo, branch, &b), 0, "branch %s", branch);
    char *tag = strdup(b.latest_tagged_version);
    vcs_branch_release(&b);
    return tag;
}

/* --- tests --- */

Test(vcs, create_then_exists)
{
    cr_assert_eq(vcs_repo_create(bare, "main"), 0);
    cr_assert_eq(vcs_repo_create(bare, "main"), -EEXIST);
    char *head = sh_line("cat %s/HEAD", bare);
    cr_assert_str_eq(head, "ref: refs/heads/main");
    free(head);
    char *is_bare = sh_line("git -C %s rev-parse --is-bare-repository", bare);
    cr_assert_str_eq(is_bare, "true");
    free(is_bare);

    /* Parents are made; a plain file or directory in the way is -EEXIST. */
    char *nested = str("%s/a/b/c.git", root);
    cr_assert_eq(vcs_repo_create(nested, "trunk"), 0);
    head = sh_line("cat %s/HEAD", nested);
    cr_assert_str_eq(head, "ref: refs/heads/trunk");
    free(head);
    cr_assert_eq(vcs_repo_create(work, "main"), -EEXIST);
    cr_assert_eq(vcs_repo_create(nested, "main"), -EEXIST);
    free(nested);

    /* No temp directory is left behind. */
    char *listing = sh_line("ls -a %s | tr '\\n' ' '", root);
    cr_assert_str_eq(listing, ". .. a repo.git work ");
    free(listing);

    char *other = str("%s/other.git", root);
    cr_assert_eq(vcs_repo_create(other, "bad..name"), -EINVAL);
    free(other);
}

Test(vcs, open_missing_or_not_a_repository)
{
    struct vcs_repo *repo = NULL;
    char *missing = str("%s/missing.git", root);
    cr_assert_eq(vcs_open(missing, &repo), -ENOENT);
    char *plain = str("%s/plain", root);
    cr_assert_eq(mkdir(plain, 0755), 0);
    cr_assert_eq(vcs_open(plain, &repo), -ENOENT);
    cr_assert_null(repo);
    free(missing);
    free(plain);
}

Test(vcs, empty_repository)
{
    struct vcs_repo *repo = create_and_open();
    size_t nr = 99;
    cr_assert_eq(vcs_branch_count(repo, &nr), 0);
    cr_assert_eq(nr, 0);
    struct branches bs = {0};
    cr_assert_eq(vcs_branch_each(repo, collect_branch, &bs), 0);
    cr_assert_eq(bs.nr, 0);
    struct vcs_branch b;
    cr_assert_eq(vcs_branch_get(repo, "main", &b), -ENOENT);
    struct revisions revs = {0};
    cr_assert_eq(vcs_revision_each(repo, "main", 0, 20, collect_revision, &revs), -ENOENT);
    cr_assert_eq(revs.nr, 0);
}

Test(vcs, linear_history_and_commit_fields)
{
    struct vcs_repo *repo = create_and_open();
    commit("first");
    commit("second");
    sh("GIT_COMMITTER_DATE='@1700000000 +0000' " GIT
       "-c user.name='Ann Example' -c user.email=ann@example.com "
       "-C %s commit -q --allow-empty -m 'third' -m 'body line'",
       work);
    push("main");

    int64_t want[] = {3, 2, 1};
    assert_numbers(repo, "main", 0, 20, want, 3);

    struct revisions revs = {0};
    cr_assert_eq(vcs_revision_each(repo, "main", 0, 20, collect_revision, &revs), 0);
    cr_assert_str_eq(revs.message[0], "third\n\nbody line\n");
    cr_assert_str_eq(revs.message[2], "first\n");
    char *first = rev("main~2");
    cr_assert_str_eq(revs.id[2], first);
    free(first);
    revisions_release(&revs);

    struct vcs_branch b;
    cr_assert_eq(vcs_branch_get(repo, "main", &b), 0);
    char *head = rev("main");
    cr_assert_str_eq(b.name, "main");
    cr_assert_str_eq(b.head.id, head);
    cr_assert_eq(b.head.number, 3);
    cr_assert_eq(b.head.time_s, 1700000000);
    cr_assert_str_eq(b.head.message, "third\n\nbody line\n");
    cr_assert_str_eq(b.head.author_name, "Ann Example");
    cr_assert_str_eq(b.head.author_email, "ann@example.com");
    cr_assert_str_eq(b.latest_tagged_version, "");
    vcs_branch_release(&b);
    vcs_branch_release(&b); /* released twice: harmless */
    vcs_branch_release(NULL);
    vcs_commit_release(NULL);
    free(head);

    size_t nr;
    cr_assert_eq(vcs_branch_count(repo, &nr), 0);
    cr_assert_eq(nr, 1);
}

Test(vcs, merge_counts_first_parents_only)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    sh(GIT "-C %s checkout -q -b feature", work);
    commit("f1");
    commit("f2");
    commit("f3");
    sh(GIT "-C %s checkout -q main", work);
    commit("c2");
    sh(GIT "-C %s merge -q --no-ff -m merge feature", work);
    push("main");
    push("feature");

    int64_t want_main[] = {3, 2, 1};
    assert_numbers(repo, "main", 0, 20, want_main, 3);
    int64_t want_feature[] = {4, 3, 2, 1};
    assert_numbers(repo, "feature", 0, 20, want_feature, 4);

    struct revisions revs = {0};
    cr_assert_eq(vcs_revision_each(repo, "main", 0, 20, collect_revision, &revs), 0);
    cr_assert_str_eq(revs.message[0], "merge\n");
    cr_assert_str_eq(revs.message[1], "c2\n");
    cr_assert_str_eq(revs.message[2], "c1\n");
    revisions_release(&revs);
}

/* A push by another process after the handle was opened is seen by the same handle: new refs and
 * new objects, whether received as loose objects or (unpackLimit=1) kept as a new pack. */
static void push_after_open(bool as_pack)
{
    cr_assert_eq(vcs_repo_create(bare, "main"), 0);
    if (as_pack)
        sh("git -C %s config receive.unpackLimit 1", bare);
    commit("one");
    push("main");
    struct vcs_repo *repo = open_bare();
    cr_assert_eq(head_number(repo, "main"), 1);

    commit("two");
    commit("three");
    push("main");
    if (as_pack) {
        char *packs = sh_line("ls %s/objects/pack/*.pack | wc -l", bare);
        cr_assert_str_eq(packs, "2");
        free(packs);
    }
    struct vcs_repo *again = open_bare();
    cr_assert_eq(again, repo, "the thread's handle is reused");
    cr_assert_eq(head_number(repo, "main"), 3);
    int64_t want[] = {3, 2, 1};
    assert_numbers(repo, "main", 0, 20, want, 3);

    sh(GIT "-C %s checkout -q -b later", work);
    commit("four");
    push("later");
    cr_assert_eq(head_number(repo, "later"), 4);
    size_t nr;
    cr_assert_eq(vcs_branch_count(repo, &nr), 0);
    cr_assert_eq(nr, 2);
}

Test(vcs, push_after_open_loose)
{
    push_after_open(false);
}

Test(vcs, push_after_open_pack)
{
    push_after_open(true);
}

Test(vcs, force_push_rewrites_numbers)
{
    struct vcs_repo *repo = create_and_open();
    commit("a1");
    commit("a2");
    commit("a3");
    commit("a4");
    push("main");
    cr_assert_eq(head_number(repo, "main"), 4);

    /* Shorter history. */
    sh(GIT "-C %s reset -q --hard main~3", work);
    commit("b2");
    push("+main");
    cr_assert_eq(head_number(repo, "main"), 2);
    struct revisions revs = {0};
    cr_assert_eq(vcs_revision_each(repo, "main", 0, 20, collect_revision, &revs), 0);
    cr_assert_eq(revs.nr, 2);
    cr_assert_str_eq(revs.message[0], "b2\n");
    cr_assert_eq(revs.number[0], 2);
    cr_assert_str_eq(revs.message[1], "a1\n");
    cr_assert_eq(revs.number[1], 1);
    revisions_release(&revs);

    /* Longer history, from a new root. */
    sh(GIT "-C %s checkout -q --orphan fresh", work);
    for (int i = 0; i < 6; i++) {
        char *message = str("n%d", i);
        commit(message);
        free(message);
    }
    push("+fresh:main");
    int64_t want[] = {6, 5, 4, 3, 2, 1};
    assert_numbers(repo, "main", 0, 20, want, 6);

    /* And back to the old history: its numbers are still right. */
    sh(GIT "-C %s checkout -q main", work);
    push("+main");
    int64_t want_old[] = {2, 1};
    assert_numbers(repo, "main", 0, 20, want_old, 2);
}

Test(vcs, branches_sorted_with_slashes)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    push("main");
    commit("c2");
    push("HEAD:refs/heads/feature/x");
    push("HEAD:refs/heads/b");
    push("HEAD:refs/heads/Z");
    commit("c3");
    push("HEAD:refs/heads/a/z");

    struct branches bs = {0};
    cr_assert_eq(vcs_branch_each(repo, collect_branch, &bs), 0);
    const char *want[] = {"Z", "a/z", "b", "feature/x", "main"};
    int64_t want_numbers[] = {2, 3, 2, 2, 1};
    cr_assert_eq(bs.nr, 5);
    for (size_t i = 0; i < bs.nr; i++) {
        cr_assert_str_eq(bs.name[i], want[i]);
        cr_assert_eq(bs.number[i], want_numbers[i], "%s", want[i]);
    }
    branches_release(&bs);

    size_t nr;
    cr_assert_eq(vcs_branch_count(repo, &nr), 0);
    cr_assert_eq(nr, 5);

    /* A non-zero return stops the walk and is returned. */
    bs.stop_after = 2;
    cr_assert_eq(vcs_branch_each(repo, collect_branch, &bs), 42);
    cr_assert_eq(bs.nr, 2);
    branches_release(&bs);

    struct vcs_branch b;
    cr_assert_eq(vcs_branch_get(repo, "feature/x", &b), 0);
    cr_assert_str_eq(b.name, "feature/x");
    cr_assert_eq(b.head.number, 2);
    vcs_branch_release(&b);

    /* The same list when the refs are packed. */
    sh("git -C %s pack-refs --all", bare);
    bs.stop_after = 0;
    cr_assert_eq(vcs_branch_each(repo, collect_branch, &bs), 0);
    cr_assert_eq(bs.nr, 5);
    for (size_t i = 0; i < bs.nr; i++)
        cr_assert_str_eq(bs.name[i], want[i]);
    branches_release(&bs);
    cr_assert_eq(head_number(repo, "a/z"), 3);
}

Test(vcs, skip_and_limit)
{
    struct vcs_repo *repo = create_and_open();
    for (int i = 1; i <= 5; i++) {
        char *message = str("c%d", i);
        commit(message);
        free(message);
    }
    push("main");
    int64_t all[] = {5, 4, 3, 2, 1};
    assert_numbers(repo, "main", 0, 5, all, 5);
    assert_numbers(repo, "main", 0, 2, all, 2);
    assert_numbers(repo, "main", 1, 2, all + 1, 2);
    assert_numbers(repo, "main", 4, 10, all + 4, 1);
    assert_numbers(repo, "main", 5, 10, NULL, 0);
    assert_numbers(repo, "main", 100, 10, NULL, 0);
    assert_numbers(repo, "main", 0, 0, NULL, 0);
    assert_numbers(repo, "main", 2, SIZE_MAX, all + 2, 3);
    assert_numbers(repo, "main", SIZE_MAX, SIZE_MAX, NULL, 0);

    struct revisions revs = {0};
    cr_assert_eq(vcs_revision_each(repo, "main", 1, 2, collect_revision, &revs), 0);
    cr_assert_str_eq(revs.message[0], "c4\n");
    cr_assert_str_eq(revs.message[1], "c3\n");
    revisions_release(&revs);
}

static int stop_at_second(const struct vcs_commit *c, void *arg)
{
    int *seen = arg;
    (void)c;
    return ++*seen == 2 ? -ECANCELED : 0;
}

Test(vcs, revision_callback_stops)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    commit("c2");
    commit("c3");
    push("main");
    int seen = 0;
    cr_assert_eq(vcs_revision_each(repo, "main", 0, 20, stop_at_second, &seen), -ECANCELED);
    cr_assert_eq(seen, 2);
}

Test(vcs, tags_highest_on_first_parent_history)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    commit("c2");
    sh(GIT "-C %s tag -a -m 'build 2' 1.0.0.2", work);
    commit("c3");
    sh(GIT "-C %s tag 1.0.1.3", work); /* lightweight */
    sh(GIT "-C %s tag 0.9.9", work);
    sh(GIT "-C %s tag v7.0.0", work);
    sh(GIT "-C %s tag 7.0", work);
    sh(GIT "-C %s tag 7.0.0.0.1", work);
    sh(GIT "-C %s tag 7.0.x", work);
    sh(GIT "-C %s tag 7.0.0-rc1", work);
    /* A version tag naming a tree is not a candidate. */
    sh(GIT "-C %s tag 8.0.0 'main^{tree}'", work);
    commit("c4");

    /* On a branch of its own: not on main. */
    sh(GIT "-C %s checkout -q -b other main~1", work);
    commit("o1");
    sh(GIT "-C %s tag -a -m other 2.0.0", work);

    /* Reachable from main only through the second parent of a merge: not on its first-parent
     * history. */
    sh(GIT "-C %s checkout -q -b side main", work);
    commit("s1");
    sh(GIT "-C %s tag 9.9.9.9", work);
    sh(GIT "-C %s checkout -q main", work);
    sh(GIT "-C %s merge -q --no-ff -m merge side", work);

    push("main");
    push("other");
    push("side");
    push("HEAD~1:refs/heads/before-merge");
    sh("git -C %s push -q %s --tags 2>/dev/null", work, bare);

    char *tag = latest_tag(repo, "main");
    cr_assert_str_eq(tag, "1.0.1.3");
    free(tag);
    tag = latest_tag(repo, "other");
    cr_assert_str_eq(tag, "2.0.0");
    free(tag);
    tag = latest_tag(repo, "side");
    cr_assert_str_eq(tag, "9.9.9.9");
    free(tag);

    /* The listing gives the same, tags being loaded once for all branches. */
    struct branches bs = {0};
    cr_assert_eq(vcs_branch_each(repo, collect_branch, &bs), 0);
    const char *want_names[] = {"before-merge", "main", "other", "side"};
    const char *want_tags[] = {"1.0.1.3", "1.0.1.3", "2.0.0", "9.9.9.9"};
    cr_assert_eq(bs.nr, 4);
    for (size_t i = 0; i < bs.nr; i++) {
        cr_assert_str_eq(bs.name[i], want_names[i]);
        cr_assert_str_eq(bs.tag[i], want_tags[i], "%s", want_names[i]);
    }
    branches_release(&bs);

    /* A higher version added on main's history wins; packed tags are read too. */
    sh(GIT "-C %s tag 1.0.10.1 main~2", work);
    sh("git -C %s push -q %s --tags 2>/dev/null", work, bare);
    sh("git -C %s pack-refs --all", bare);
    tag = latest_tag(repo, "main");
    cr_assert_str_eq(tag, "1.0.10.1");
    free(tag);
}

Test(vcs, tags_only_before_head)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    sh(GIT "-C %s tag 1.0.0", work);
    commit("c2");
    push("HEAD~1:refs/heads/old");
    sh(GIT "-C %s tag 1.0.0.1", work);
    push("main");
    sh("git -C %s push -q %s --tags 2>/dev/null", work, bare);
    char *tag = latest_tag(repo, "main");
    cr_assert_str_eq(tag, "1.0.0.1");
    free(tag);
    tag = latest_tag(repo, "old");
    cr_assert_str_eq(tag, "1.0.0");
    free(tag);
}

/* A handle keeps its tag set while refs/tags and packed-refs are unchanged: make their times old
 * (so that they are trusted), then change tags in each way git does. */
static void age_tag_refs(void)
{
    sh("touch -d '1 hour ago' %s/refs/tags; [ ! -e %s/packed-refs ] || "
       "touch -d '1 hour ago' %s/packed-refs",
       bare, bare, bare);
}

Test(vcs, tag_changes_are_seen_by_the_same_handle)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    sh(GIT "-C %s tag 1.0.0", work);
    commit("c2");
    commit("c3");
    push("main");
    sh("git -C %s push -q %s --tags 2>/dev/null", work, bare);
    age_tag_refs();
    char *tag = latest_tag(repo, "main");
    cr_assert_str_eq(tag, "1.0.0");
    free(tag);
    tag = latest_tag(repo, "main"); /* from the cache */
    cr_assert_str_eq(tag, "1.0.0");
    free(tag);

    /* A new loose tag. */
    sh(GIT "-C %s tag 1.0.1 main~1", work);
    sh("git -C %s push -q %s --tags 2>/dev/null", work, bare);
    tag = latest_tag(repo, "main");
    cr_assert_str_eq(tag, "1.0.1");
    free(tag);

    /* Tags moved into packed-refs, then one deleted from there. */
    sh("git -C %s pack-refs --all", bare);
    age_tag_refs();
    tag = latest_tag(repo, "main");
    cr_assert_str_eq(tag, "1.0.1");
    free(tag);
    sh("git -C %s tag -d 1.0.1 >/dev/null", bare);
    tag = latest_tag(repo, "main");
    cr_assert_str_eq(tag, "1.0.0");
    free(tag);

    /* A tag moved by a forced push. */
    age_tag_refs();
    sh(GIT "-C %s tag -f 1.0.0 main >/dev/null", work);
    sh("git -C %s push -q -f %s refs/tags/1.0.0 2>/dev/null", work, bare);
    struct vcs_branch b;
    cr_assert_eq(vcs_branch_get(repo, "main", &b), 0);
    cr_assert_str_eq(b.latest_tagged_version, "1.0.0");
    vcs_branch_release(&b);
    push("+main~1:refs/heads/older");
    tag = latest_tag(repo, "older");
    cr_assert_str_eq(tag, "", "1.0.0 now names a commit after older's head");
    free(tag);
}

/* More branches than the answers a handle keeps: listing twice gives the same. */
Test(vcs, many_branches_with_tags)
{
    struct vcs_repo *repo = create_and_open();
    enum { NR = 150 };
    /* c0..c149 on main, a tag 1.0.0.<i> on every tenth, branch b<i> at main~i. */
    sh("cd %s && awk 'BEGIN { n = %d; for (i = 0; i < n; i++) {"
       "  printf \"commit refs/heads/main\\nmark :%%d\\ncommitter T <t@example.com> %%d +0000\\n"
       "data <<EOF\\nc%%d\\nEOF\\n\\n\", i + 1, 1700000000 + i, i;"
       "  if (i %% 10 == 0) printf \"reset refs/tags/1.0.0.%%d\\nfrom :%%d\\n\\n\", i, i + 1;"
       "  printf \"reset refs/heads/b%%03d\\nfrom :%%d\\n\\n\", n - 1 - i, i + 1 } }' | "
       "git fast-import --quiet",
       work, NR);
    sh("git -C %s push -q %s --all 2>/dev/null && git -C %s push -q %s --tags 2>/dev/null", work,
       bare, work, bare);

    for (int round = 0; round < 2; round++) {
        struct branches bs = {0};
        cr_assert_eq(vcs_branch_each(repo, collect_branch, &bs), 0);
        cr_assert_eq(bs.nr, NR + 1);
        for (int i = 0; i < NR; i++) {
            /* b<i> is main~i: commit c<NR-1-i>, number NR-i; its tag is the nearest multiple of
             * ten at or below c<NR-1-i>. */
            char *want_name = str("b%03d", i);
            char *want_tag = str("1.0.0.%d", (NR - 1 - i) / 10 * 10);
            cr_assert_str_eq(bs.name[i], want_name);
            cr_assert_eq(bs.number[i], NR - i);
            cr_assert_str_eq(bs.tag[i], want_tag, "round %d, %s", round, want_name);
            free(want_name);
            free(want_tag);
        }
        cr_assert_str_eq(bs.name[NR], "main");
        cr_assert_str_eq(bs.tag[NR], "1.0.0.140");
        branches_release(&bs);
    }
}

Test(vcs, unknown_branch)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    push("main");
    struct vcs_branch b;
    cr_assert_eq(vcs_branch_get(repo, "nope", &b), -ENOENT);
    cr_assert_eq(vcs_branch_get(repo, "feature/nope", &b), -ENOENT);
    cr_assert_eq(vcs_branch_get(repo, "..", &b), -ENOENT);
    cr_assert_eq(vcs_branch_get(repo, "", &b), -ENOENT);
    cr_assert_eq(vcs_branch_get(repo, "HEAD", &b), -ENOENT);
    cr_assert_eq(vcs_branch_get(repo, "ma", &b), -ENOENT);
    struct revisions revs = {0};
    cr_assert_eq(vcs_revision_each(repo, "nope", 0, 20, collect_revision, &revs), -ENOENT);
    cr_assert_eq(vcs_revision_each(repo, "nope", 0, 0, collect_revision, &revs), -ENOENT);
    cr_assert_eq(revs.nr, 0);
}

Test(vcs, branch_name_validity)
{
    const char *valid[] = {"main",        "feature/x", "release-1.0", "a/b/c", "x.y",
                           "caf\xc3\xa9", "trunk",     "v1@2",        "@"};
    const char *invalid[] = {"",     "HEAD", "-x",   "a..b",   "a b",        "a~b",
                             "a^b",  "a:b",  "a?b",  "a*b",    "a[b",        "a\\b",
                             "/a",   "a/",   "a//b", ".a",     "a/.b",       "a.lock",
                             "a@{b", "a.",   "a\tb", "a\x7fz", "a/b.lock/c", "a\x01"};
    for (size_t i = 0; i < sizeof(valid) / sizeof(*valid); i++)
        cr_assert(vcs_branch_name_valid(valid[i]), "'%s' should be valid", valid[i]);
    for (size_t i = 0; i < sizeof(invalid) / sizeof(*invalid); i++)
        cr_assert_not(vcs_branch_name_valid(invalid[i]), "'%s' should be invalid", invalid[i]);
    cr_assert_not(vcs_branch_name_valid(NULL));

    char longest[257];
    memset(longest, 'a', sizeof(longest) - 1);
    longest[255] = '\0';
    cr_assert(vcs_branch_name_valid(longest));
    longest[255] = 'a';
    longest[256] = '\0';
    cr_assert_not(vcs_branch_name_valid(longest));
}

/* A repository deleted and made again at the same path is not read through the old handle. */
Test(vcs, repository_replaced_at_same_path)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    commit("c2");
    push("main");
    cr_assert_eq(head_number(repo, "main"), 2);

    cr_assert_eq(fs_remove_tree(bare), 0);
    cr_assert_eq(vcs_repo_create(bare, "main"), 0);
    struct vcs_repo *again = open_bare();
    cr_assert_eq(again, repo, "opened again in the same slot");
    cr_assert_eq(vcs_branch_get(repo, "main", &(struct vcs_branch){0}), -ENOENT);
    sh(GIT "-C %s checkout -q --orphan fresh", work);
    commit("n1");
    push("+fresh:main");
    cr_assert_eq(head_number(repo, "main"), 1);

    cr_assert_eq(fs_remove_tree(bare), 0);
    struct vcs_repo *gone = NULL;
    cr_assert_eq(vcs_open(bare, &gone), -ENOENT);
}

/* More repositories than the per-thread cache holds: the oldest handles are replaced. */
Test(vcs, many_repositories)
{
    commit("c1");
    commit("c2");
    enum { NR = 24 };
    char *paths[NR];
    for (int i = 0; i < NR; i++) {
        paths[i] = str("%s/r%d.git", root, i);
        cr_assert_eq(vcs_repo_create(paths[i], "main"), 0);
        if (i == 0)
            sh("git -C %s push -q %s main 2>/dev/null", work, paths[i]);
        else
            sh("cp -R %s/objects %s/refs %s/", paths[0], paths[0], paths[i]);
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < NR; i++) {
            struct vcs_repo *repo;
            cr_assert_eq(vcs_open(paths[i], &repo), 0);
            cr_assert_eq(head_number(repo, "main"), 2);
            /* The handle just used stays while others are opened. */
            struct vcs_repo *same;
            cr_assert_eq(vcs_open(paths[i], &same), 0);
            cr_assert_eq(same, repo);
        }
    }
    for (int i = 0; i < NR; i++)
        free(paths[i]);
}

struct thread_result {
    char *path;
    struct vcs_repo *repo;
    int64_t number;
    bool release;
    int r;
};

static void *thread_main(void *arg)
{
    struct thread_result *res = arg;
    res->r = vcs_open(res->path, &res->repo);
    if (!res->r) {
        struct vcs_branch b;
        res->r = vcs_branch_get(res->repo, "main", &b);
        if (!res->r)
            res->number = b.head.number;
        vcs_branch_release(&b);
    }
    /* Half the threads release explicitly; the others rely on the thread-exit destructor. */
    if (res->release)
        vcs_thread_release();
    return NULL;
}

Test(vcs, threads_have_their_own_handles)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    commit("c2");
    commit("c3");
    push("main");
    cr_assert_eq(head_number(repo, "main"), 3);

    enum { NR = 8 };
    pthread_t tids[NR];
    struct thread_result res[NR];
    for (int i = 0; i < NR; i++) {
        res[i] = (struct thread_result){.path = bare, .release = i % 2};
        cr_assert_eq(pthread_create(&tids[i], NULL, thread_main, &res[i]), 0);
    }
    for (int i = 0; i < NR; i++) {
        cr_assert_eq(pthread_join(tids[i], NULL), 0);
        cr_assert_eq(res[i].r, 0);
        cr_assert_eq(res[i].number, 3);
        cr_assert_neq(res[i].repo, repo);
    }

    vcs_thread_release();
    vcs_thread_release();
    repo = open_bare();
    cr_assert_eq(head_number(repo, "main"), 3);
}

/* A history longer than the first-parent walk of one request, numbered incrementally. */
Test(vcs, long_history_incremental)
{
    struct vcs_repo *repo = create_and_open();
    sh("cd %s && { for i in $(seq 1 500); do "
       "printf 'commit refs/heads/main\\ncommitter T <t@example.com> %%d +0000\\n"
       "data <<EOF\\nc%%d\\nEOF\\n\\n' $((1700000000 + i)) $i; done; } | "
       "git fast-import --quiet",
       work);
    sh(GIT "-C %s reset -q --hard main", work);
    push("main");
    int64_t want[] = {500, 499, 498};
    assert_numbers(repo, "main", 0, 3, want, 3);
    int64_t want_old[] = {10, 9};
    assert_numbers(repo, "main", 490, 2, want_old, 2);

    commit("c501");
    push("main");
    cr_assert_eq(head_number(repo, "main"), 501);
    push("+main~250:main");
    cr_assert_eq(head_number(repo, "main"), 251);
}

Test(vcs, history_from_a_head_id)
{
    struct vcs_repo *repo = create_and_open();
    commit("one");
    commit("two");
    commit("three");
    push("main");
    char head[VCS_OID_HEX];
    cr_assert_eq(vcs_branch_exists(repo, "main", head), 0);
    char *want = rev("main");
    cr_assert_str_eq(head, want);
    free(want);
    cr_assert_eq(vcs_branch_exists(repo, "nope", head), -ENOENT);
    cr_assert_eq(vcs_branch_exists(repo, "main", NULL), 0);

    struct revisions revs = {0};
    cr_assert_eq(vcs_history_each(repo, head, 1, 5, collect_revision, &revs), 0);
    cr_assert_eq(revs.nr, 2);
    cr_assert_eq(revs.number[0], 2);
    cr_assert_eq(revs.number[1], 1);
    revisions_release(&revs);
    cr_assert_eq(vcs_history_each(repo, "zz", 0, 5, collect_revision, &revs), -EINVAL);
    cr_assert_eq(vcs_history_each(repo, "0123456789012345678901234567890123456789", 0, 5,
                                  collect_revision, &revs),
                 -EIO);
}

Test(vcs, tag_lookup)
{
    struct vcs_repo *repo = create_and_open();
    commit("c1");
    sh(GIT "-C %s tag 1.0.0.1", work); /* lightweight */
    commit("c2");
    sh(GIT "-C %s tag -a -m 'build 2' 1.0.0.2", work); /* annotated: peeled to its commit */
    sh(GIT "-C %s tag 8.0.0.2 'main^{tree}'", work);   /* names a tree */
    push("refs/heads/main");
    push("refs/tags/*");
    char *c1 = rev("main~1"), *c2 = rev("main");
    char id[VCS_OID_HEX] = "untouched";
    cr_assert_eq(vcs_tag_lookup(repo, "1.0.0.1", id), 0);
    cr_assert_str_eq(id, c1);
    cr_assert_eq(vcs_tag_lookup(repo, "1.0.0.2", id), 0);
    cr_assert_str_eq(id, c2);
    cr_assert_eq(vcs_tag_lookup(repo, "8.0.0.2", id), 0);
    cr_assert_str_eq(id, "");
    strcpy(id, "untouched");
    cr_assert_eq(vcs_tag_lookup(repo, "9.9.9.9", id), -ENOENT);
    cr_assert_eq(vcs_tag_lookup(repo, "bad..name", id), -ENOENT);
    cr_assert_str_eq(id, "untouched");
    /* vcs_tag on an existing tag is -EEXIST, whichever commit it names */
    cr_assert_eq(vcs_tag(repo, c2, "1.0.0.1"), -EEXIST);
    cr_assert_eq(vcs_tag(repo, c2, "1.0.0.3"), 0);
    cr_assert_eq(vcs_tag_lookup(repo, "1.0.0.3", id), 0);
    cr_assert_str_eq(id, c2);
    free(c1);
    free(c2);
}
