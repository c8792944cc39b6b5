/* Tests for the reading of a receive-pack request's command list (api/git_push.c): what a push
 * asks to update, as its audit entries name it. */
#include "api/api_int.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#define OLD  "1111111111111111111111111111111111111111"
#define NEW  "2222222222222222222222222222222222222222"
#define ZERO "0000000000000000000000000000000000000000"

/* A pkt-line: 4 hex digits of length (itself included), then the data. */
static size_t pkt(char *out, const char *data, size_t len)
{
    snprintf(out, 5, "%04zx", len + 4);
    memcpy(out + 4, data, len);
    return len + 4;
}

Test(git_push, reads_the_updates_before_the_flush)
{
    char buf[1024];
    size_t n = 0;
    static const char first[] = OLD " " NEW " refs/heads/main\0report-status side-band-64k\n";
    n += pkt(buf + n, first, sizeof(first) - 1);
    n += pkt(buf + n, ZERO " " NEW " refs/heads/new\n", 41 * 2 + 15);
    n += pkt(buf + n, "shallow " OLD "\n", 49);
    memcpy(buf + n, "0000PACK....", 12);
    n += 12;
    struct api_git_push p = {0};
    cr_assert_eq(api_git_push_parse(buf, n, &p), 0);
    cr_assert_eq(p.nr, 2);
    cr_assert_eq(p.nr_more, 0);
    cr_assert_str_eq(p.cmd[0].ref, "refs/heads/main");
    cr_assert_str_eq(p.cmd[0].old_oid, OLD);
    cr_assert_str_eq(p.cmd[0].new_oid, NEW);
    cr_assert_str_eq(p.cmd[1].ref, "refs/heads/new");
    cr_assert_str_eq(p.cmd[1].old_oid, ZERO);

    struct strbuf d = STRBUF_INIT;
    api_git_push_describe("id", &p, &d);
    cr_assert_str_eq(d.buf,
                     "push=id " OLD ".." NEW " refs/heads/main " ZERO ".." NEW " refs/heads/new");
    strbuf_release(&d);
    api_git_push_release(&p);
}

Test(git_push, counts_what_is_beyond_the_cap_or_cut_off)
{
    size_t len = (API_GIT_PUSH_MAX_REFS + 3) * 100 + 100;
    char *buf = malloc(len);
    size_t n = 0;
    char line[128];
    for (int i = 0; i < API_GIT_PUSH_MAX_REFS + 3; i++) {
        int l = snprintf(line, sizeof(line), OLD " " NEW " refs/tags/v%d\n", i);
        n += pkt(buf + n, line, (size_t)l);
    }
    struct api_git_push p = {0};
    cr_assert_eq(api_git_push_parse(buf, n - 10, &p), 0); /* the last line cut off */
    cr_assert_eq(p.nr, API_GIT_PUSH_MAX_REFS);
    cr_assert_eq(p.nr_more, 3);
    api_git_push_release(&p);
    free(buf);
}

Test(git_push, refuses_what_is_not_a_command_list)
{
    struct api_git_push p = {0};
    cr_assert_eq(api_git_push_parse("", 0, &p), -EINVAL);
    cr_assert_eq(api_git_push_parse("0000", 4, &p), -EINVAL);
    cr_assert_eq(api_git_push_parse("zzzzjunk", 8, &p), -EINVAL);
    cr_assert_eq(api_git_push_parse("0003", 4, &p), -EINVAL);
    char buf[128];
    size_t n = pkt(buf, "1234 5678 refs/heads/x\n", 23); /* not object ids */
    cr_assert_eq(api_git_push_parse(buf, n, &p), -EINVAL);
    cr_assert_eq(p.nr, 0);
}
