/* cli — `slipway admin --data DIR <noun> <verb> [options]`: administration on a data directory,
 * whether or not a server runs on it (SQLite in WAL mode lets both work at once, and a running
 * server sees each change at once). Each command prints only its result. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "admin/admin.h"
#include "auth/auth.h"
#include "base/crypto.h"
#include "base/layout.h"
#include "base/log.h"
#include "cli/cli.h"
#include "store/store.h"
#include "vcs/vcs.h"
#include "base/banned.h"

static const char usage[] =
    "usage: slipway admin --data DIR <command> [options]\n"
    "\n"
    "Administers the data directory DIR, whether or not a server runs on it. Each command\n"
    "prints only its result and is written to the audit log.\n"
    "\n"
    "commands:\n"
    "  user add --email E --name N [--admin]   add a user (--admin: every right everywhere)\n"
    "  user list                               list users: email, name, admin\n"
    "  apikey add --email E                    make an API key for the user; prints it (once)\n"
    "  apikey revoke --email E --id ID         revoke a key (ID: its first 12 characters)\n"
    "  token add --email E --scopes a,b        make a personal access token; prints it (once)\n"
    "                                          (the App Repository API needs the scope\n"
    "                                          mx:modelrepository:repo:read)\n"
    "  token revoke --email E --id ID          revoke a token (ID: 12 characters after 'slw_')\n"
    "  app add --id APPID --name NAME          add an app with its git repository and its\n"
    "                                          Test, Acceptance and Production environments;\n"
    "                                          prints its ProjectId\n"
    "  app list                                list apps: AppId, ProjectId, name\n"
    "  member add --app APPID --email E --role viewer|developer|admin\n"
    "                                          add a member (or change the role); a new member\n"
    "                                          gets API Rights on Test and Acceptance\n"
    "  member list --app APPID                 list members and roles\n"
    "  env add --app APPID --env NAME [--production]\n"
    "                                          add a flexible environment (after Test,\n"
    "                                          Acceptance and Production)\n"
    "  grant --app APPID --email E --env MODE --rights R[,R...]\n"
    "  revoke --app APPID --email E --env MODE --rights R[,R...]\n"
    "                                          change a member's rights on one environment;\n"
    "                                          rights: api, transport, backups, monitoring,\n"
    "                                          alerts, permissions\n"
    "\n"
    "options:\n"
    "  --data DIR    the data directory (as given to 'slipway serve')\n"
    "  -h, --help    show this help\n"
    "\n"
    "exit status:\n"
    "  0    done\n"
    "  1    the operation failed on the server side (the store, a repository); see the message\n"
    "  2    usage: an unknown command or option, a required option missing\n"
    "  65   a value is not valid (AppId, email, name, role, rights, scopes)\n"
    "  66   not found: the data directory, or the user, app, environment, key or token, or\n"
    "       membership the command names\n"
    "  73   exists already: the user or app the command would add\n";

/* Exit codes, sysexits(3) where one fits; the usage above lists them. */
enum {
    EXIT_DONE = 0,
    EXIT_INTERNAL = 1,
    EXIT_USAGE = 2,
    EXIT_INVALID = EX_DATAERR,   /* 65 */
    EXIT_NOT_FOUND = EX_NOINPUT, /* 66 */
    EXIT_EXISTS = EX_CANTCREAT,  /* 73 */
};

struct args {
    const char *email, *name, *id, *scopes, *app, *env, *rights, *role;
    int admin, production;
};

static int parse(int argc, char **argv, struct args *a)
{
    static const struct option longopts[] = {
        {"email", required_argument, NULL, 'e'},  {"name", required_argument, NULL, 'n'},
        {"id", required_argument, NULL, 'i'},     {"scopes", required_argument, NULL, 's'},
        {"app", required_argument, NULL, 'a'},    {"env", required_argument, NULL, 'v'},
        {"rights", required_argument, NULL, 'r'}, {"role", required_argument, NULL, 'o'},
        {"admin", no_argument, NULL, 'A'},        {"production", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'e':
            a->email = optarg;
            break;
        case 'n':
            a->name = optarg;
            break;
        case 'i':
            a->id = optarg;
            break;
        case 's':
            a->scopes = optarg;
            break;
        case 'a':
            a->app = optarg;
            break;
        case 'v':
            a->env = optarg;
            break;
        case 'r':
            a->rights = optarg;
            break;
        case 'o':
            a->role = optarg;
            break;
        case 'A':
            a->admin = 1;
            break;
        case 'P':
            a->production = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            exit(0);
        default:
            return -1;
        }
    }
    return optind == argc ? 0 : -1;
}

/* Reports missing required options; true when all are present. */
static bool need(const char *cmd, int n, ...)
{
    va_list ap;
    bool ok = true;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *name = va_arg(ap, const char *);
        const char *value = va_arg(ap, const char *);
        if (!value) {
            fprintf(stderr, "slipway admin %s: --%s is required\n", cmd, name);
            ok = false;
        }
    }
    va_end(ap);
    return ok;
}

static int print_user(const struct store_user *u, void *arg)
{
    (void)arg;
    printf("%s\t%s\t%s\n", u->email, u->name, u->admin ? "admin" : "-");
    return 0;
}

static int print_app(const struct store_app *a, void *arg)
{
    (void)arg;
    printf("%s\t%s\t%s\n", a->app_id, a->project_id, a->name);
    return 0;
}

static int print_member(const struct store_member *m, void *arg)
{
    (void)arg;
    printf("%s\t%s\n", m->email, auth_role_name(m->role));
    return 0;
}

/* Reports an admin operation's error; returns the exit code for it. */
static int failed(const struct admin_error *err)
{
    fprintf(stderr, "slipway admin: %s (%s)\n", err->message, admin_error_name(err));
    switch (err->kind) {
    case ADMIN_INVALID:
        return EXIT_INVALID;
    case ADMIN_NOT_FOUND:
        return EXIT_NOT_FOUND;
    case ADMIN_EXISTS:
        return EXIT_EXISTS;
    case ADMIN_OK:
    case ADMIN_INTERNAL:
        break;
    }
    return EXIT_INTERNAL;
}

/* True when the verb is `want` (NULL: no verb). */
static bool verb_is(const char *verb, const char *want)
{
    if (!want || !verb)
        return want == verb;
    return strcmp(verb, want) == 0;
}

static int run(const char *noun, const char *verb, struct args *a, const struct admin_actor *act)
{
    struct admin_error err;
    char *secret = NULL;
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "%s%s%s", noun, verb ? " " : "", verb ? verb : "");

#define IS(n, v) (!strcmp(noun, n) && verb_is(verb, v))
    if (IS("user", "add")) {
        struct store_user u;
        if (!need(cmd, 2, "email", a->email, "name", a->name))
            return EXIT_USAGE;
        if (admin_user_add(act, a->email, a->name, a->admin, &u, &err))
            return failed(&err);
        printf("%s\n", u.email);
    } else if (IS("user", "list")) {
        if (store_user_each(print_user, NULL))
            return EXIT_INTERNAL;
    } else if (IS("apikey", "add") || IS("token", "add")) {
        bool token = !strcmp(noun, "token");
        if (!need(cmd, 1, "email", a->email) || (token && !need(cmd, 1, "scopes", a->scopes)))
            return EXIT_USAGE;
        int r = token ? admin_token_add(act, a->email, a->scopes, &secret, &err)
                      : admin_apikey_add(act, a->email, &secret, &err);
        if (r)
            return failed(&err);
        printf("%s\n", secret);
        free(secret);
    } else if (IS("apikey", "revoke") || IS("token", "revoke")) {
        if (!need(cmd, 2, "email", a->email, "id", a->id))
            return EXIT_USAGE;
        if (admin_secret_revoke(act, a->email, !strcmp(noun, "token"), a->id, &err))
            return failed(&err);
        printf("revoked\n");
    } else if (IS("app", "add")) {
        struct store_app app;
        if (!need(cmd, 2, "id", a->id, "name", a->name))
            return EXIT_USAGE;
        if (admin_app_add(act, a->id, a->name, &app, &err))
            return failed(&err);
        printf("%s\n", app.project_id);
    } else if (IS("app", "list")) {
        if (store_app_each(0, print_app, NULL))
            return EXIT_INTERNAL;
    } else if (IS("member", "add")) {
        if (!need(cmd, 3, "app", a->app, "email", a->email, "role", a->role))
            return EXIT_USAGE;
        if (admin_member_add(act, a->app, a->email, a->role, &err))
            return failed(&err);
        printf("%s\t%s\n", a->email, a->role);
    } else if (IS("member", "list")) {
        struct store_app app;
        if (!need(cmd, 1, "app", a->app))
            return EXIT_USAGE;
        int r = store_app_by_appid(a->app, &app);
        if (r == -ENOENT) {
            fprintf(stderr, "slipway admin: no app with AppId '%.40s'\n", a->app);
            return EXIT_NOT_FOUND;
        }
        if (r || store_member_each(app.id, print_member, NULL))
            return EXIT_INTERNAL;
    } else if (IS("env", "add")) {
        struct store_env env;
        if (!need(cmd, 2, "app", a->app, "env", a->env))
            return EXIT_USAGE;
        if (admin_env_add(act, a->app, a->env, a->production, &env, &err))
            return failed(&err);
        printf("%s\t%s\n", env.mode, env.environment_id);
    } else if (IS("grant", NULL) || IS("revoke", NULL)) {
        if (!need(cmd, 4, "app", a->app, "email", a->email, "env", a->env, "rights", a->rights))
            return EXIT_USAGE;
        if (admin_rights_change(act, a->app, a->email, a->env, a->rights, !strcmp(noun, "revoke"),
                                &err))
            return failed(&err);
        printf("%s\n", !strcmp(noun, "revoke") ? "revoked" : "granted");
    } else {
        static const struct {
            const char *noun, *verbs;
        } nouns[] = {{"user", "add, list"}, {"apikey", "add, revoke"}, {"token", "add, revoke"},
                     {"app", "add, list"},  {"member", "add, list"},   {"env", "add"}};
        for (size_t i = 0; i < sizeof(nouns) / sizeof(nouns[0]); i++)
            if (!strcmp(noun, nouns[i].noun)) {
                if (verb)
                    fprintf(stderr, "slipway admin: '%s' has no sub-command '%s' (it has: %s)\n",
                            noun, verb, nouns[i].verbs);
                else
                    fprintf(stderr, "slipway admin: '%s' needs a sub-command: %s\n", noun,
                            nouns[i].verbs);
                return EXIT_USAGE;
            }
        fprintf(stderr, "slipway admin: unknown command '%s'\n\n%s", cmd, usage);
        return EXIT_USAGE;
    }
#undef IS
    return EXIT_DONE;
}

int cli_admin(int argc, char **argv)
{
    const char *data = NULL;
    int i = 1;
    for (int k = 1; k < argc; k++) /* help wins wherever it is asked for */
        if (!strcmp(argv[k], "-h") || !strcmp(argv[k], "--help")) {
            fputs(usage, stdout);
            return EXIT_DONE;
        }
    /* --data DIR comes before the command */
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strncmp(argv[i], "--data=", 7)) {
            data = argv[i] + 7;
        } else {
            break;
        }
    }
    if (!data && i < argc) {
        fprintf(stderr,
                "slipway admin: --data DIR is required, before the command ('slipway "
                "admin --data DIR %s ...')\n",
                argv[i]);
        return EXIT_USAGE;
    }
    if (!data || i >= argc) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *noun = argv[i++];
    const char *verb = NULL;
    if (strcmp(noun, "grant") != 0 && strcmp(noun, "revoke") != 0 && i < argc && argv[i][0] != '-')
        verb = argv[i++];
    struct args a = {0};
    /* getopt wants argv[0]: reuse the word before the options */
    if (parse(argc - i + 1, argv + i - 1, &a)) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }

    if (access(data, F_OK) != 0) {
        fprintf(stderr,
                "slipway admin: no data directory '%s' (start 'slipway serve --data %s' "
                "once, or create it)\n",
                data, data);
        return EXIT_NOT_FOUND;
    }
    if (crypto_init() || layout_init(data) || store_init(layout_db_path()) || vcs_init()) {
        fprintf(stderr, "slipway admin: cannot open the data directory '%s'\n", data);
        layout_release();
        return EXIT_INTERNAL;
    }
    char actor[128];
    struct passwd *pw = getpwuid(getuid());
    snprintf(actor, sizeof(actor), "cli:%s", pw ? pw->pw_name : "unknown");
    struct admin_actor act = {actor, "cli"};
    int rc = run(noun, verb, &a, &act);
    vcs_shutdown();
    store_thread_release();
    layout_release();
    return rc;
}
