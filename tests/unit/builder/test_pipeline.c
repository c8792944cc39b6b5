/* Tests for builder/pipeline: the example of pipeline-file.md field by field, a minimal file and
 * the defaults, the accepted spellings, every class of error with its line, column and key, the
 * limits against hostile files, the formatted message and the manifest JSON (read back with
 * jansson). Checks are tables and plain functions run from a few Test cases: Criterion starts a
 * process per test and the unit tests must stay fast.
 */
#include "builder/pipeline.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(pipeline, .timeout = 10);

/* The example of shared/design/pipeline-file.md, byte for byte. */
static const char doc_example[] =
    "version: 1\n"
    "runtime: \"c-static 1.0\"          # free text, reported as the package's runtime "
    "(MendixVersion in the v1 API)\n"
    "\n"
    "build:\n"
    "  steps:                         # each step runs with /bin/sh -e in the workspace, in the "
    "sandbox\n"
    "    - make\n"
    "    - ./run-unit-tests\n"
    "  timeout: 10m                   # s, m, h; default 30m\n"
    "  network: false                 # default false: the sandbox has no network\n"
    "  env:                           # extra variables for the build (not secrets)\n"
    "    CFLAGS: -O2\n"
    "\n"
    "package:\n"
    "  include:                       # paths copied from the workspace into the package (files "
    "or folders)\n"
    "    - bin/\n"
    "    - static/\n"
    "\n"
    "run:\n"
    "  command: ./bin/server          # started from the unpacked release dir, once per instance\n"
    "  health: /healthz               # HTTP path polled on the instance until it answers 2xx; "
    "Started after that\n"
    "  start_timeout: 60s\n"
    "  stop_timeout: 10s              # SIGTERM, then SIGKILL of the process group after this\n"
    "  database: postgres             # optional: a PostgreSQL database per environment "
    "(DATABASE_URL)\n"
    "\n"
    "constants:                       # per-environment settings; reach the app as "
    "MX_<Module>_<Name>\n"
    "  - name: Main.Greeting          #   (dots become underscores: MX_Main_Greeting)\n"
    "    type: String                 # String | Integer | Decimal | Boolean\n"
    "    default: hello\n"
    "  - name: UnitTesting.RemoteApiPassword\n"
    "    type: String\n"
    "    default: \"\"\n"
    "    secret: true                 # stored encrypted, never shown in logs or API answers "
    "after being set\n"
    "\n"
    "scheduled_events:                # enabled/disabled per environment in the settings API\n"
    "  - name: Main.Cleanup\n"
    "    cron: \"*/5 * * * *\"          # 5-field cron, server local time\n"
    "    command: ./bin/cleanup\n"
    "\n"
    "tests:                           # run against a running environment (APP_URL set), "
    "results gate promotion\n"
    "  - name: api\n"
    "    command: ./tests/api.sh --junit out/junit.xml\n"
    "    junit: out/junit.xml\n"
    "  - name: unit\n"
    "    unittesting:                 # the UnitTesting module's remote API (/unittests/start, "
    "/unittests/status)\n"
    "      password_constant: UnitTesting.RemoteApiPassword\n";

static const char minimal[] = "version: 1\n"
                              "build:\n"
                              "  steps: [make]\n"
                              "package:\n"
                              "  include: [bin/]\n";

/* Three valid lines; what a case adds starts at line 4. */
#define HEAD "version: 1\nbuild: {steps: [make]}\npackage: {include: [bin]}\n"

static int parse(const char *yaml, struct pipeline *p, struct pipeline_error *e)
{
    return pipeline_parse(yaml, strlen(yaml), p, e);
}

static void parse_ok(const char *yaml, struct pipeline *p)
{
    struct pipeline_error e = {0};
    int r = parse(yaml, p, &e);
    cr_assert_eq(r, 0, "did not parse: %d:%d: %s: %s\n---\n%s", e.line, e.column, e.key, e.message,
                 yaml);
}

struct bad {
    const char *yaml;
    int line, column;
    const char *key;
    const char *message; /* the whole message, or a part of it ending in "..." */
};

static void check_bad(const struct bad *b, size_t len)
{
    struct pipeline p = {.version = 12345};
    struct pipeline_error e;
    memset(&e, 'x', sizeof(e));
    int r = pipeline_parse(b->yaml, len, &p, &e);
    cr_assert_eq(r, -EINVAL, "parsed (%d), expected \"%s\"\n---\n%s", r, b->message, b->yaml);
    cr_expect_eq(p.version, 12345, "out was written on error");
    cr_assert(memchr(e.key, '\0', sizeof(e.key)) && memchr(e.message, '\0', sizeof(e.message)));
    size_t want = strlen(b->message);
    bool prefix = want > 3 && strcmp(b->message + want - 3, "...") == 0;
    bool msg_ok =
        prefix ? strncmp(e.message, b->message, want - 3) == 0 : strcmp(e.message, b->message) == 0;
    cr_expect(e.line == b->line && e.column == b->column && strcmp(e.key, b->key) == 0 && msg_ok,
              "got  %d:%d [%s] %s\nwant %d:%d [%s] %s\n---\n%s", e.line, e.column, e.key, e.message,
              b->line, b->column, b->key, b->message, b->yaml);
}

static void check_bad_table(const struct bad *cases, size_t nr)
{
    for (size_t i = 0; i < nr; i++)
        check_bad(&cases[i], strlen(cases[i].yaml));
}

#define TABLE(t) check_bad_table(t, sizeof(t) / sizeof(t[0]))

/* ---- files that parse ---- */

static void doc_example_parses_field_by_field(void)
{
    struct pipeline p;
    parse_ok(doc_example, &p);
    cr_assert_eq(p.version, 1);
    cr_assert_str_eq(p.runtime, "c-static 1.0");
    cr_assert_eq(p.nr_build_steps, 2);
    cr_assert_str_eq(p.build_steps[0], "make");
    cr_assert_str_eq(p.build_steps[1], "./run-unit-tests");
    cr_assert_eq(p.build_timeout_s, 600);
    cr_assert_eq(p.build_network, false);
    cr_assert_eq(p.build_memory, 2LL << 30); /* the defaults */
    cr_assert_eq(p.build_pids, 1024);
    cr_assert_eq(p.build_disk, 2LL << 30);
    cr_assert_eq(p.nr_build_env, 1);
    cr_assert_str_eq(p.build_env[0].name, "CFLAGS");
    cr_assert_str_eq(p.build_env[0].value, "-O2");
    cr_assert_eq(p.nr_package_include, 2);
    cr_assert_str_eq(p.package_include[0], "bin/");
    cr_assert_str_eq(p.package_include[1], "static/");
    cr_assert(p.run.present);
    cr_assert_str_eq(p.run.command, "./bin/server");
    cr_assert_str_eq(p.run.health, "/healthz");
    cr_assert_eq(p.run.start_timeout_s, 60);
    cr_assert_eq(p.run.stop_timeout_s, 10);
    cr_assert(p.run.database);
    cr_assert_eq(p.nr_constants, 2);
    cr_assert_str_eq(p.constants[0].name, "Main.Greeting");
    cr_assert_eq(p.constants[0].type, PIPELINE_STRING);
    cr_assert_str_eq(p.constants[0].default_value, "hello");
    cr_assert_eq(p.constants[0].secret, false);
    cr_assert_str_eq(p.constants[1].name, "UnitTesting.RemoteApiPassword");
    cr_assert_eq(p.constants[1].type, PIPELINE_STRING);
    cr_assert_str_eq(p.constants[1].default_value, "");
    cr_assert_eq(p.constants[1].secret, true);
    cr_assert_eq(p.nr_events, 1);
    cr_assert_str_eq(p.events[0].name, "Main.Cleanup");
    cr_assert_str_eq(p.events[0].cron, "*/5 * * * *");
    cr_assert_str_eq(p.events[0].command, "./bin/cleanup");
    cr_assert_eq(p.nr_tests, 2);
    cr_assert_str_eq(p.tests[0].name, "api");
    cr_assert_str_eq(p.tests[0].command, "./tests/api.sh --junit out/junit.xml");
    cr_assert_str_eq(p.tests[0].junit, "out/junit.xml");
    cr_assert_null(p.tests[0].unittesting_password_constant);
    cr_assert_str_eq(p.tests[1].name, "unit");
    cr_assert_null(p.tests[1].command);
    cr_assert_null(p.tests[1].junit);
    cr_assert_str_eq(p.tests[1].unittesting_password_constant, "UnitTesting.RemoteApiPassword");
    cr_assert_eq(pipeline_constant_find(&p, "UnitTesting.RemoteApiPassword"), &p.constants[1]);
    cr_assert_null(pipeline_constant_find(&p, "Main.Nope"));
    pipeline_release(&p);
    cr_assert_null(p.build_steps);
    cr_assert_eq(p.nr_constants, 0);
    pipeline_release(&p); /* released twice: a no-op */
}

static void minimal_file_gets_the_defaults(void)
{
    struct pipeline p;
    parse_ok(minimal, &p);
    cr_assert_eq(p.version, 1);
    cr_assert_null(p.runtime);
    cr_assert_eq(p.nr_build_steps, 1);
    cr_assert_str_eq(p.build_steps[0], "make");
    cr_assert_eq(p.build_timeout_s, 30 * 60);
    cr_assert_eq(p.build_network, false);
    cr_assert_eq(p.nr_build_env, 0);
    cr_assert_null(p.build_env);
    cr_assert_eq(p.nr_package_include, 1);
    cr_assert_str_eq(p.package_include[0], "bin/");
    cr_assert_not(p.run.present);
    cr_assert_null(p.run.command);
    cr_assert_eq(p.run.start_timeout_s, 60);
    cr_assert_eq(p.run.stop_timeout_s, 10);
    cr_assert_eq(p.nr_constants + p.nr_events + p.nr_tests, 0);
    cr_assert_null(p.constants);
    pipeline_release(&p);

    /* run without its optional keys keeps the defaults; a NULL err is allowed */
    const char *with_run = HEAD "run: {command: ./srv}\n";
    cr_assert_eq(pipeline_parse(with_run, strlen(with_run), &p, NULL), 0);
    cr_assert(p.run.present);
    cr_assert_null(p.run.health);
    cr_assert_eq(p.run.start_timeout_s, 60);
    cr_assert_eq(p.run.stop_timeout_s, 10);
    cr_assert(!p.run.database);
    pipeline_release(&p);

    /* run.database: postgres */
    parse_ok(HEAD "run:\n  command: ./srv\n  database: postgres\n", &p);
    cr_assert(p.run.present);
    cr_assert(p.run.database);
    pipeline_release(&p);
    parse_ok(HEAD "run: {command: ./srv, database: \"postgres\"}\n", &p);
    cr_assert(p.run.database);
    pipeline_release(&p);
    cr_assert_eq(pipeline_parse("", 0, &p, NULL), -EINVAL);
    cr_assert_eq(pipeline_parse(NULL, 0, &p, NULL), -EINVAL);
}

static void durations(void)
{
    static const struct {
        const char *text;
        int64_t seconds;
    } cases[] = {
        {"1", 1},       {"90", 90},       {"90s", 90},      {"10m", 600},     {"1h", 3600},
        {"24h", 86400}, {"1440m", 86400}, {"86400", 86400}, {"\"15m\"", 900}, {"007s", 7},
    };
    char yaml[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pipeline p;
        snprintf(yaml, sizeof(yaml),
                 "version: 1\nbuild: {steps: [make], timeout: %s}\npackage: {include: [bin]}\n"
                 "run: {command: x, start_timeout: %s, stop_timeout: %s}\n",
                 cases[i].text, cases[i].text, cases[i].text);
        parse_ok(yaml, &p);
        cr_assert_eq(p.build_timeout_s, cases[i].seconds, "%s", cases[i].text);
        cr_assert_eq(p.run.start_timeout_s, cases[i].seconds, "%s", cases[i].text);
        cr_assert_eq(p.run.stop_timeout_s, cases[i].seconds, "%s", cases[i].text);
        pipeline_release(&p);
    }
}

static void accepted_spellings(void)
{
    struct pipeline p;
    /* BOM, explicit document markers, anchors without aliases, !!str, block scalars, numbers and
     * booleans as env values, every constant type, Boolean normalised */
    parse_ok("\xEF\xBB\xBF%YAML 1.1\n---\n"
             "version: 1\n"
             "build:\n"
             "  steps:\n"
             "    - &first make\n"
             "    - |\n"
             "      ./configure\n"
             "      make check\n"
             "    - !!str 42\n"
             "  network: True\n"
             "  env: {JOBS: 4, DEBUG: false, _X1: \"\", EMPTY_OK: ''}\n"
             "package:\n"
             "  include: [\"./bin\", a/..b/c, ..., .hidden/]\n"
             "constants:\n"
             "  - {name: M.S, type: String, default: 1.50}\n"
             "  - {name: M.I, type: Integer, default: -42}\n"
             "  - {name: M.Big, type: Integer, default: \"9223372036854775807\"}\n"
             "  - {name: M.D, type: Decimal, default: 3.14}\n"
             "  - {name: M.D2, type: Decimal, default: \"-10\"}\n"
             "  - {name: M.B, type: Boolean, default: TRUE}\n"
             "  - {name: M.B2, type: Boolean, default: \"false\", secret: false}\n"
             "  - {name: a_1.b_2, type: String}\n"
             "scheduled_events:\n"
             "  - {name: M.E1, cron: '0 3 * * 1-5', command: a}\n"
             "  - {name: M.E2, cron: \"*/15\t0-23/2 1,15,31 1-12 0,7\", command: a}\n"
             "  - {name: M.E3, cron: '  59 23 31 12 7  ', command: a}\n"
             "  - {name: M.E4, cron: '0-59/59 * * */12 *', command: a}\n"
             "  - {name: M.E5, cron: '0 9 * Jan-JUN mon-fri', command: a}\n"
             "  - {name: M.E6, cron: '@daily', command: a}\n"
             "tests:\n"
             "  - {name: A-1.b_c, command: run}\n"
             "  - {name: 9lives, unittesting: {password_constant: M.S}}\n"
             "...\n",
             &p);
    cr_assert_eq(p.nr_build_steps, 3);
    cr_assert_str_eq(p.build_steps[1], "./configure\nmake check\n");
    cr_assert_str_eq(p.build_steps[2], "42");
    cr_assert_eq(p.build_network, true);
    cr_assert_eq(p.nr_build_env, 4);
    cr_assert_str_eq(p.build_env[0].value, "4");
    cr_assert_str_eq(p.build_env[1].value, "false");
    cr_assert_str_eq(p.build_env[2].name, "_X1");
    cr_assert_str_eq(p.build_env[2].value, "");
    cr_assert_eq(p.nr_package_include, 4);
    cr_assert_str_eq(p.package_include[1], "a/..b/c");
    cr_assert_eq(p.nr_constants, 8);
    cr_assert_str_eq(p.constants[0].default_value, "1.50");
    cr_assert_eq(p.constants[1].type, PIPELINE_INTEGER);
    cr_assert_str_eq(p.constants[1].default_value, "-42");
    cr_assert_eq(p.constants[3].type, PIPELINE_DECIMAL);
    cr_assert_eq(p.constants[5].type, PIPELINE_BOOLEAN);
    cr_assert_str_eq(p.constants[5].default_value, "true");
    cr_assert_str_eq(p.constants[6].default_value, "false");
    cr_assert_null(p.constants[7].default_value);
    cr_assert_str_eq(p.events[1].cron, "*/15\t0-23/2 1,15,31 1-12 0,7");
    cr_assert_str_eq(p.events[2].cron, "  59 23 31 12 7  ");
    cr_assert_str_eq(p.events[4].cron, "0 9 * Jan-JUN mon-fri");
    cr_assert_str_eq(p.events[5].cron, "@daily");
    cr_assert_str_eq(p.tests[1].unittesting_password_constant, "M.S");
    pipeline_release(&p);

    /* tests may come before the constants they name */
    parse_ok(HEAD "tests: [{name: u, unittesting: {password_constant: U.P}}]\n"
                  "constants: [{name: U.P, type: String, secret: true}]\n",
             &p);
    cr_assert_str_eq(p.tests[0].unittesting_password_constant, "U.P");
    pipeline_release(&p);

    cr_assert_str_eq(pipeline_type_name(PIPELINE_STRING), "String");
    cr_assert_str_eq(pipeline_type_name(PIPELINE_INTEGER), "Integer");
    cr_assert_str_eq(pipeline_type_name(PIPELINE_DECIMAL), "Decimal");
    cr_assert_str_eq(pipeline_type_name(PIPELINE_BOOLEAN), "Boolean");
}

/* ---- errors: structure ---- */

static const struct bad structure_errors[] = {
    {"", 0, 0, "", "the file is empty: it needs at least version, build.steps and package.include"},
    {"# nothing but a comment\n", 0, 0, "", "the file is empty..."},
    {"---\n", 0, 0, "", "the file is empty..."},
    {"- version: 1\n", 1, 1, "",
     "the top level must be a mapping of keys (version, build, package, ...), found a list"},
    {"just some text\n", 1, 1, "",
     "the top level must be a mapping of keys (version, build, "
     "package, ...), found 'just some text'"},
    /* version */
    {"build: {steps: [make]}\npackage: {include: [bin]}\n", 1, 1, "version",
     "is missing (write version: 1 at the top)"},
    {"version: 2\nbuild: {steps: [make]}\npackage: {include: [bin]}\n", 1, 10, "version",
     "'2' is not supported (this Slipway reads version 1)"},
    {"version: one\n", 1, 10, "version", "expected the number 1, found 'one'"},
    {"version: 1.0\n", 1, 10, "version", "expected the number 1, found '1.0'"},
    {"version:\nbuild: {}\n", 1, 9, "version", "expected the number 1, found nothing"},
    {"version: [1]\n", 1, 10, "version", "expected the number 1, found a list"},
    /* required sections and keys */
    {"version: 1\npackage: {include: [bin]}\n", 1, 1, "build",
     "is missing (build.steps lists the commands)"},
    {"version: 1\nbuild: {steps: [make]}\n", 1, 1, "package",
     "is missing (package.include lists what goes in)"},
    {"version: 1\nbuild:\n  timeout: 5m\npackage: {include: [bin]}\n", 3, 3, "build.steps",
     "is missing (a list of commands that build the app)"},
    {"version: 1\nbuild: {steps: [make]}\npackage: {}\n", 3, 10, "package.include",
     "is missing (a list of the files and folders that make the package)"},
    /* unknown keys, at every level */
    {HEAD "bulid: {}\n", 4, 1, "bulid",
     "unknown key 'bulid' (known keys: version, runtime, build, package, run, constants, "
     "scheduled_events, tests)"},
    {"version: 1\nbuild:\n  steps: [make]\n  timout: 10m\npackage: {include: [bin]}\n", 4, 3,
     "build.timout",
     "unknown key 'timout' (known keys: steps, timeout, network, env, memory, pids, disk)"},
    {"version: 1\nbuild: {steps: [make]}\npackage: {include: [bin], exclude: [x]}\n", 3, 27,
     "package.exclude", "unknown key 'exclude' (known keys: include)"},
    {HEAD "run:\n  command: x\n  helth: /h\n", 6, 3, "run.helth",
     "unknown key 'helth' (known keys: command, health, start_timeout, stop_timeout, database)"},
    {HEAD "constants:\n  - name: Main.A\n    type: String\n    secret: false\n    hidden: true\n",
     8, 5, "constants[0].hidden", "unknown key 'hidden' (known keys: name, type, default, secret)"},
    {HEAD "scheduled_events:\n  - name: Main.E\n    cron: '* * * * *'\n    command: x\n"
          "    enabled: true\n",
     8, 5, "scheduled_events[0].enabled",
     "unknown key 'enabled' (known keys: name, cron, command)"},
    {HEAD "tests:\n  - name: t\n    command: x\n    timeout: 5m\n", 7, 5, "tests[0].timeout",
     "unknown key 'timeout' (known keys: name, command, junit, unittesting)"},
    {HEAD "constants:\n  - {name: U.P, type: String}\ntests:\n  - name: u\n    unittesting:\n"
          "      password_constant: U.P\n      user: x\n",
     10, 7, "tests[0].unittesting.user", "unknown key 'user' (known keys: password_constant)"},
    /* duplicate keys */
    {"version: 1\nbuild: {steps: [make]}\nbuild: {steps: [x]}\npackage: {include: [bin]}\n", 3, 1,
     "build", "the key appears twice (first at line 2)"},
    {"version: 1\nbuild:\n  steps: [make]\n  steps: [x]\npackage: {include: [bin]}\n", 4, 3,
     "build.steps", "the key appears twice (first at line 3)"},
    {"version: 1\nbuild:\n  steps: [make]\n  env:\n    A: 1\n    A: 2\npackage: {include: "
     "[bin]}\n",
     6, 5, "build.env.A", "the key appears twice (first at line 5)"},
    {HEAD "tests:\n  - {name: a, command: x, command: y}\n", 5, 27, "tests[0].command",
     "the key appears twice (first at line 5)"},
    /* wrong types */
    {"version: 1\nbuild:\n  - make\npackage: {include: [bin]}\n", 3, 3, "build",
     "expected a mapping (steps, timeout, network, env, memory, pids, disk), found a list"},
    {"version: 1\nbuild:\npackage: {include: [bin]}\n", 2, 7, "build",
     "expected a mapping (steps, timeout, network, env, memory, pids, disk), found nothing"},
    {"version: 1\nbuild:\n  steps: {a: b}\npackage: {include: [bin]}\n", 3, 10, "build.steps",
     "expected a list of commands, found a mapping"},
    {"version: 1\nbuild:\n  steps: make\npackage: {include: [bin]}\n", 3, 10, "build.steps",
     "expected a list of commands, found 'make'"},
    {"version: 1\nbuild: {steps: [[make]]}\npackage: {include: [bin]}\n", 2, 17, "build.steps[0]",
     "expected a command, found a list"},
    {"version: 1\nbuild: {steps: [make, ~]}\npackage: {include: [bin]}\n", 2, 23, "build.steps[1]",
     "expected a command, found nothing"},
    {"version: 1\nbuild: {steps: [make]}\npackage:\n  include:\n    bin: yes\n", 5, 5,
     "package.include", "expected a list of paths, found a mapping"},
    {"version: 1\nbuild: {steps: [make], env: [A]}\npackage: {include: [bin]}\n", 2, 29,
     "build.env", "expected a mapping of variable names to values, found a list"},
    {"version: 1\nbuild: {steps: [make], env: {A: [1]}}\npackage: {include: [bin]}\n", 2, 33,
     "build.env.A", "expected a value (write \"\" for an empty one), found a list"},
    {HEAD "runtime: [c]\n", 4, 10, "runtime", "expected a line of text, found a list"},
    {HEAD "runtime: |\n  two\n  lines\n", 4, 10, "runtime",
     "must be one line of text, without control characters"},
    {HEAD "runtime: \"\"\n", 4, 10, "runtime", "must not be empty"},
    /* the version comes first: a newer file is told so, not about its new keys */
    {"newer_key: x\nversion: 2\n", 2, 10, "version",
     "'2' is not supported (this Slipway reads version 1)"},
    {HEAD "run: ./server\n", 4, 6, "run",
     "expected a mapping (command, health, start_timeout, stop_timeout, database), found "
     "'./server'"},
    {HEAD "constants:\n  Main.A: x\n", 5, 3, "constants",
     "expected a list of constants, found a mapping"},
    {HEAD "constants:\n  - Main.A\n", 5, 5, "constants[0]",
     "expected a constant (name, type, default, secret), found 'Main.A'"},
    {HEAD "scheduled_events: {}\n", 4, 19, "scheduled_events",
     "expected a list of scheduled events, found a mapping"},
    {HEAD "tests:\n  - [a]\n", 5, 5, "tests[0]",
     "expected a test (name, command or unittesting, junit), found a list"},
    {HEAD "constants: [{name: U.P, type: String}]\ntests:\n  - name: u\n    unittesting: U.P\n", 7,
     18, "tests[0].unittesting", "expected a mapping (password_constant), found 'U.P'"},
    {HEAD "? [a]\n: b\n", 4, 3, "", "a key must be text, found a list"},
    {HEAD "constants: [{? {a: b} : c}]\n", 4, 16, "constants[0]",
     "a key must be text, found a mapping"},
};

/* ---- errors: values ---- */

static const struct bad value_errors[] = {
    /* limits */
    {"version: 1\nbuild: {steps: [make], memory: 2 GB}\npackage: {include: [bin]}\n", 2, 32,
     "build.memory", "'2 GB' is not a size (a number with B, KB, MB, GB or TB, e.g. 2GB)"},
    {"version: 1\nbuild: {steps: [make], memory: 1MB}\npackage: {include: [bin]}\n", 2, 32,
     "build.memory", "'1MB' is out of range (16MB to 1024TB)"},
    {"version: 1\nbuild: {steps: [make], disk: 0}\npackage: {include: [bin]}\n", 2, 30,
     "build.disk", "'0' is out of range (1MB to 1024TB)"},
    {"version: 1\nbuild: {steps: [make], pids: 8}\npackage: {include: [bin]}\n", 2, 30,
     "build.pids", "'8' is out of range (16 to 1000000)"},
    {"version: 1\nbuild: {steps: [make], pids: many}\npackage: {include: [bin]}\n", 2, 30,
     "build.pids", "'many' is not a whole number"},
    /* durations */
    {"version: 1\nbuild:\n  steps: [make]\n  timeout: 10x\npackage: {include: [bin]}\n", 4, 12,
     "build.timeout", "'10x' is not a duration (use s, m or h, e.g. 10m)"},
    {"version: 1\nbuild: {steps: [make], timeout: 25h}\npackage: {include: [bin]}\n", 2, 33,
     "build.timeout", "'25h' is out of range (1s to 24h)"},
    {"version: 1\nbuild: {steps: [make], timeout: 0}\npackage: {include: [bin]}\n", 2, 33,
     "build.timeout", "'0' is out of range (1s to 24h)"},
    {"version: 1\nbuild: {steps: [make], timeout: 9999999999s}\npackage: {include: [bin]}\n", 2, 33,
     "build.timeout", "'9999999999s' is out of range (1s to 24h)"},
    {"version: 1\nbuild: {steps: [make], timeout: 1h30m}\npackage: {include: [bin]}\n", 2, 33,
     "build.timeout", "'1h30m' is not a duration (use s, m or h, e.g. 10m)"},
    {"version: 1\nbuild: {steps: [make], timeout: -5}\npackage: {include: [bin]}\n", 2, 33,
     "build.timeout", "'-5' is not a duration (use s, m or h, e.g. 10m)"},
    {"version: 1\nbuild: {steps: [make], timeout: }\npackage: {include: [bin]}\n", 2, 33,
     "build.timeout", "expected a duration (e.g. 90s, 10m, 1h), found nothing"},
    {HEAD "run: {command: x, start_timeout: 86401}\n", 4, 34, "run.start_timeout",
     "'86401' is out of range (1s to 24h)"},
    {HEAD "run: {command: x, stop_timeout: 10 m}\n", 4, 33, "run.stop_timeout",
     "'10 m' is not a duration (use s, m or h, e.g. 10m)"},
    /* booleans */
    {"version: 1\nbuild:\n  steps: [make]\n  network: yes\npackage: {include: [bin]}\n", 4, 12,
     "build.network", "expected true or false, found 'yes'"},
    {HEAD "constants: [{name: A.B, type: String, secret: 1}]\n", 4, 47, "constants[0].secret",
     "expected true or false, found '1'"},
    /* steps and run */
    {"version: 1\nbuild: {steps: [make, \"\"]}\npackage: {include: [bin]}\n", 2, 23,
     "build.steps[1]", "must not be empty"},
    {"version: 1\nbuild: {steps: ['  ']}\npackage: {include: [bin]}\n", 2, 17, "build.steps[0]",
     "must not be empty"},
    {"version: 1\nbuild: {steps: []}\npackage: {include: [bin]}\n", 2, 16, "build.steps",
     "the list is empty: it needs at least one of the steps"},
    {HEAD "run: {health: /x}\n", 4, 6, "run.command", "is missing (what starts the app)"},
    {HEAD "run: {command: ''}\n", 4, 16, "run.command", "must not be empty"},
    {HEAD "run:\n  command: x\n  database: mysql\n", 6, 13, "run.database",
     "'mysql' is not a database Slipway provides (postgres)"},
    {HEAD "run: {command: x, database: Postgres}\n", 4, 29, "run.database",
     "'Postgres' is not a database Slipway provides (postgres)"},
    {HEAD "run: {command: x, database: \"postgres \"}\n", 4, 29, "run.database",
     "'postgres ' is not a database Slipway provides (postgres)"},
    {HEAD "run: {command: x, database: ~}\n", 4, 29, "run.database",
     "expected a database (postgres), found nothing"},
    {HEAD "run: {command: x, database: [postgres]}\n", 4, 29, "run.database",
     "expected a database (postgres), found a list"},
    {HEAD "run: {command: x, health: healthz}\n", 4, 27, "run.health",
     "'healthz' is not an HTTP path (it starts with '/', without blanks)"},
    {HEAD "run: {command: x, health: /a b}\n", 4, 27, "run.health",
     "'/a b' is not an HTTP path (it starts with '/', without blanks)"},
    /* env */
    {"version: 1\nbuild:\n  steps: [make]\n  env: {1X: a}\npackage: {include: [bin]}\n", 4, 9,
     "build.env.1X",
     "'1X' is not a variable name (letters, digits and _, not starting with a digit)"},
    {"version: 1\nbuild:\n  steps: [make]\n  env: {A-B: a}\npackage: {include: [bin]}\n", 4, 9,
     "build.env.A-B", "'A-B' is not a variable name..."},
    {"version: 1\nbuild:\n  steps: [make]\n  env: {X: }\npackage: {include: [bin]}\n", 4, 12,
     "build.env.X", "expected a value (write \"\" for an empty one), found nothing"},
    /* paths */
    {"version: 1\nbuild: {steps: [make]}\npackage: {include: [/etc]}\n", 3, 21,
     "package.include[0]", "'/etc' is absolute: paths are relative to the workspace"},
    {"version: 1\nbuild: {steps: [make]}\npackage: {include: [bin, a/../../b]}\n", 3, 26,
     "package.include[1]", "'a/../../b' leaves the workspace ('..' is not allowed)"},
    {"version: 1\nbuild: {steps: [make]}\npackage: {include: [..]}\n", 3, 21, "package.include[0]",
     "'..' leaves the workspace ('..' is not allowed)"},
    {"version: 1\nbuild: {steps: [make]}\npackage: {include: [bin/..]}\n", 3, 21,
     "package.include[0]", "'bin/..' leaves the workspace ('..' is not allowed)"},
    {"version: 1\nbuild: {steps: [make]}\npackage: {include: [\"\"]}\n", 3, 21,
     "package.include[0]", "must not be empty"},
    {"version: 1\nbuild: {steps: [make]}\npackage: {include: [\"a\\tb\"]}\n", 3, 21,
     "package.include[0]", "'a?b' contains a control character"},
    {"version: 1\nbuild: {steps: [make]}\npackage: {include: []}\n", 3, 20, "package.include",
     "the list is empty: it needs at least one of the paths"},
    {HEAD "tests: [{name: t, command: x, junit: /tmp/j.xml}]\n", 4, 38, "tests[0].junit",
     "'/tmp/j.xml' is absolute: paths are relative to the workspace"},
    /* constants */
    {HEAD "constants: [{name: Greeting, type: String}]\n", 4, 20, "constants[0].name",
     "'Greeting' is not a Module.Name (two names of letters, digits and _ joined by a dot, e.g. "
     "Main.Greeting)"},
    {HEAD "constants: [{name: Main.Greeting.X, type: String}]\n", 4, 20, "constants[0].name",
     "'Main.Greeting.X' is not a Module.Name..."},
    {HEAD "constants: [{name: 1Main.X, type: String}]\n", 4, 20, "constants[0].name",
     "'1Main.X' is not a Module.Name..."},
    {HEAD "constants: [{name: Main._X, type: String}]\n", 4, 20, "constants[0].name",
     "'Main._X' is not a Module.Name..."},
    {HEAD "constants: [{name: \"\", type: String}]\n", 4, 20, "constants[0].name",
     "'' is not a Module.Name..."},
    {HEAD "constants:\n  - {name: Main.A, type: String}\n  - {name: Main.A, type: Integer}\n", 6,
     12, "constants[1].name", "the constant 'Main.A' is declared twice (first at line 5)"},
    {HEAD "constants:\n  - {name: Main.A_b, type: String}\n  - {name: Main_A.b, type: String}\n", 6,
     12, "constants[1].name", "'Main.A_b' and 'Main_A.b' would both be the variable MX_Main_A_b"},
    {HEAD "constants:\n  - {type: String}\n", 5, 5, "constants[0].name",
     "is missing (Module.Name)"},
    {HEAD "constants:\n  - {name: A.B}\n", 5, 5, "constants[0].type",
     "is missing (String, Integer, Decimal or Boolean)"},
    {HEAD "constants: [{name: A.B, type: string}]\n", 4, 31, "constants[0].type",
     "'string' is not a type (String, Integer, Decimal or Boolean)"},
    {HEAD "constants: [{name: A.B, type: Integer, default: 1.5}]\n", 4, 49, "constants[0].default",
     "'1.5' is not an Integer (a whole number)"},
    {HEAD "constants: [{name: A.B, type: Integer, default: 99999999999999999999}]\n", 4, 49,
     "constants[0].default", "'99999999999999999999' is not an Integer (a whole number)"},
    {HEAD "constants: [{name: A.B, type: Integer, default: \"\"}]\n", 4, 49, "constants[0].default",
     "'' is not an Integer (a whole number)"},
    {HEAD "constants: [{name: A.B, type: Decimal, default: 1e5}]\n", 4, 49, "constants[0].default",
     "'1e5' is not a Decimal (digits with an optional fraction, e.g. "
     "2.50)"},
    {HEAD "constants: [{name: A.B, type: Decimal, default: 1.}]\n", 4, 49, "constants[0].default",
     "'1.' is not a Decimal..."},
    {HEAD "constants: [{name: A.B, type: Decimal, default: .5}]\n", 4, 49, "constants[0].default",
     "'.5' is not a Decimal..."},
    {HEAD "constants: [{name: A.B, type: Boolean, default: yes}]\n", 4, 49, "constants[0].default",
     "'yes' is not a Boolean (true or false)"},
    /* a secret's value is not repeated in the message, whatever the order of the keys */
    {HEAD "constants: [{name: A.B, type: Integer, default: hunter2, secret: true}]\n", 4, 49,
     "constants[0].default", "the secret default is not an Integer (a whole number)"},
    {HEAD "constants: [{name: A.B, type: String, default: }]\n", 4, 48, "constants[0].default",
     "expected a value (write \"\" for an empty String), found nothing"},
    /* scheduled events */
    /* a cron error points at the character at fault when the value is the file's text on its
     * line (plain, '...' or "..." without escapes); otherwise at the value */
    {HEAD "scheduled_events:\n  - {name: Main.A, cron: \"0 25 * * *\", command: x}\n", 5, 29,
     "scheduled_events[0].cron", "hour: 25 is out of range 0-23"},
    {HEAD "scheduled_events:\n  - {name: Main.A, cron: '0 25 * * *', command: x}\n", 5, 29,
     "scheduled_events[0].cron", "hour: 25 is out of range 0-23"},
    {HEAD "scheduled_events:\n  - name: Main.A\n    cron: 0 0 * * 1-8\n    command: x\n", 6, 21,
     "scheduled_events[0].cron", "day-of-week: 8 is out of range 0-7"},
    {HEAD
     "scheduled_events:\n  - name: Main.A\n    cron: 0 0 * * 1-8   # comment\n    command: x\n",
     6, 21, "scheduled_events[0].cron", "day-of-week: 8 is out of range 0-7"},
    {HEAD "scheduled_events:\n  - name: Main.A\n    cron:   \"0   0 * *  mon-sun\"  # c\n"
          "    command: x\n",
     6, 25, "scheduled_events[0].cron", "day-of-week: mon-sun runs backwards"},
    /* characters, not bytes */
    {HEAD "scheduled_events: [{name: M.A, cron: \"0 \xc3\xa9 * * * 1\", command: x}]\n", 4, 49,
     "scheduled_events[0].cron",
     "found 6 fields; cron needs 5: minute hour day-of-month month day-of-week"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"0 \xc3\xa9 * * *\", command: x}]\n", 4, 41,
     "scheduled_events[0].cron", "hour: expected a number, found '?'"},
    /* an escape, a fold or an anchor: the value's own position */
    {HEAD "scheduled_events: [{name: M.A, cron: \"0\\t25 * * *\", command: x}]\n", 4, 38,
     "scheduled_events[0].cron", "hour: 25 is out of range 0-23"},
    {HEAD "scheduled_events:\n  - name: M.A\n    cron: 0\n      25 * * *\n    command: x\n", 6, 11,
     "scheduled_events[0].cron", "hour: 25 is out of range 0-23"},
    {HEAD "scheduled_events:\n  - name: M.A\n    cron: >-\n      0 25 * * *\n    command: x\n", 6,
     11, "scheduled_events[0].cron", "hour: 25 is out of range 0-23"},
    {HEAD "scheduled_events: [{name: M.A, cron: &c \"0 25 * * *\", command: x}]\n", 4, 38,
     "scheduled_events[0].cron", "hour: 25 is out of range 0-23"},
    {HEAD "scheduled_events: [{name: M.A, cron: !!str \"0 25 * * *\", command: x}]\n", 4, 38,
     "scheduled_events[0].cron", "hour: 25 is out of range 0-23"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"0 * * *\", command: x}]\n", 4, 39,
     "scheduled_events[0].cron",
     "found 4 fields; cron needs 5: minute hour day-of-month month day-of-week"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"0 * * * * 2024\", command: x}]\n", 4, 49,
     "scheduled_events[0].cron", "found 6 fields; cron needs 5..."},
    {HEAD "scheduled_events: [{name: M.A, cron: \"\", command: x}]\n", 4, 39,
     "scheduled_events[0].cron", "the expression is empty; cron needs 5 fields..."},
    {HEAD "scheduled_events: [{name: M.A, cron: , command: x}]\n", 4, 38,
     "scheduled_events[0].cron",
     "expected a cron expression (e.g. \"*/5 * * * *\"), found nothing"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"@reboot\", command: x}]\n", 4, 39,
     "scheduled_events[0].cron",
     "'@reboot' is not a shortcut (use @hourly, @daily, @weekly, @monthly or @yearly, or 5 "
     "fields)"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"*/0 * * * *\", command: x}]\n", 4, 41,
     "scheduled_events[0].cron", "minute: step 0 is out of range 1-59"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"*/100 * * * *\", command: x}]\n", 4, 41,
     "scheduled_events[0].cron", "minute: step 100 is out of range 1-59"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"5-2 * * * *\", command: x}]\n", 4, 39,
     "scheduled_events[0].cron", "minute: 5-2 runs backwards"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"60 * * * *\", command: x}]\n", 4, 39,
     "scheduled_events[0].cron", "minute: 60 is out of range 0-59"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"* * 0 * *\", command: x}]\n", 4, 43,
     "scheduled_events[0].cron", "day-of-month: 0 is out of range 1-31"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"* * * 1-13 *\", command: x}]\n", 4, 47,
     "scheduled_events[0].cron", "month: 13 is out of range 1-12"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"* * * * 8\", command: x}]\n", 4, 47,
     "scheduled_events[0].cron", "day-of-week: 8 is out of range 0-7"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"5/10 * * * *\", command: x}]\n", 4, 40,
     "scheduled_events[0].cron", "minute: a step goes after * or a range (*/10 or 1-30/5)"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"1,,2 * * * *\", command: x}]\n", 4, 41,
     "scheduled_events[0].cron", "minute: an empty item in the list"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"* * * JANUARY *\", command: x}]\n", 4, 45,
     "scheduled_events[0].cron", "month: 'JANUARY' is not a month (1-12 or jan-dec)"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"99999999999 * * * *\", command: x}]\n", 4, 39,
     "scheduled_events[0].cron", "minute: 99999999999 is out of range 0-59"},
    {HEAD "scheduled_events: [{name: M.A, cron: \"* * * * *\"}]\n", 4, 20,
     "scheduled_events[0].command", "is missing (what it runs)"},
    {HEAD "scheduled_events: [{name: M.A, command: x}]\n", 4, 20, "scheduled_events[0].cron",
     "is missing (when it runs, e.g. \"0 3 * * *\")"},
    {HEAD "scheduled_events: [{name: Cleanup, cron: \"* * * * *\", command: x}]\n", 4, 27,
     "scheduled_events[0].name", "'Cleanup' is not a Module.Name..."},
    {HEAD "scheduled_events:\n  - {name: M.A, cron: \"* * * * *\", command: x}\n"
          "  - {name: M.A, cron: \"* * * * *\", command: y}\n",
     6, 12, "scheduled_events[1].name", "the event 'M.A' is declared twice (first at line 5)"},
    /* tests */
    {HEAD "constants: [{name: U.P, type: String}]\n"
          "tests:\n  - name: a\n    command: x\n    unittesting: {password_constant: U.P}\n",
     8, 18, "tests[0]", "a test has either 'command' or 'unittesting', not both"},
    {HEAD "tests:\n  - name: a\n    junit: out/j.xml\n", 5, 5, "tests[0]",
     "a test needs 'command' or 'unittesting'"},
    {HEAD "constants: [{name: U.P, type: String}]\n"
          "tests:\n  - name: a\n    unittesting: {password_constant: U.P}\n    junit: j.xml\n",
     8, 12, "tests[0].junit", "only a test with a 'command' has a junit report"},
    {HEAD "tests: [{name: u, unittesting: {password_constant: X.Y}}]\n", 4, 52,
     "tests[0].unittesting.password_constant",
     "'X.Y' is not a declared constant (add it under constants)"},
    {HEAD "tests: [{name: u, unittesting: {password_constant: password}}]\n", 4, 52,
     "tests[0].unittesting.password_constant", "'password' is not a Module.Name..."},
    {HEAD "tests: [{name: u, unittesting: {}}]\n", 4, 32, "tests[0].unittesting.password_constant",
     "is missing (the constant holding the UnitTesting module's remote API password)"},
    {HEAD "tests:\n  - {name: api, command: a}\n  - {name: api, command: b}\n", 6, 12,
     "tests[1].name", "the test 'api' is declared twice (first at line 5)"},
    {HEAD "tests: [{name: my test, command: a}]\n", 4, 16, "tests[0].name",
     "'my test' is not a test name (letters, digits, _, . and -, starting with a letter or "
     "digit)"},
    {HEAD "tests: [{name: _x, command: a}]\n", 4, 16, "tests[0].name",
     "'_x' is not a test name..."},
    {HEAD "tests: [{command: a}]\n", 4, 9, "tests[0].name", "is missing (a short name like api)"},
    {HEAD "tests: [{name: t, command: \" \"}]\n", 4, 28, "tests[0].command", "must not be empty"},
};

/* ---- limits and hostile input ---- */

/* A strbuf-like builder for the big inputs below. */
struct text {
    char *buf;
    size_t len, alloc;
};

__attribute__((format(printf, 2, 3))) static void text_add(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0);
    if (t->len + (size_t)n + 1 > t->alloc) {
        t->alloc = (t->len + (size_t)n + 1) * 2;
        t->buf = realloc(t->buf, t->alloc);
        cr_assert_not_null(t->buf);
    }
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* A valid file but for `nr` items in one list (which: 0 steps, 1 env, 2 include, 3 constants,
 * 4 scheduled_events, 5 tests). Item i is on line 5 + i. */
static char *with_items(int which, size_t nr)
{
    static const char *const heads[] = {
        "version: 1\npackage: {include: [bin]}\nbuild:\n  steps:\n",
        "version: 1\npackage: {include: [bin]}\nbuild:\n  env:\n",
        "version: 1\nbuild: {steps: [make]}\npackage:\n  include:\n",
        HEAD "constants:\n",
        HEAD "scheduled_events:\n",
        HEAD "tests:\n",
    };
    struct text t = {0};
    text_add(&t, "%s", heads[which]);
    for (size_t i = 0; i < nr; i++) {
        switch (which) {
        case 0:
            text_add(&t, "    - step%zu\n", i);
            break;
        case 1:
            text_add(&t, "    V%zu: %zu\n", i, i);
            break;
        case 2:
            text_add(&t, "    - dir%zu/\n", i);
            break;
        case 3:
            text_add(&t, "  - {name: M.C%zu, type: Integer, default: %zu}\n", i, i);
            break;
        case 4:
            text_add(&t, "  - {name: M.E%zu, cron: '%zu * * * *', command: x}\n", i, i % 60);
            break;
        default:
            text_add(&t, "  - {name: t%zu, command: 'x %zu'}\n", i, i);
            break;
        }
    }
    if (which == 1)
        text_add(&t, "  steps: [make]\n");
    return t.buf;
}

static void limits(void)
{
    struct pipeline p;
    struct pipeline_error e;
    static const struct {
        const char *key, *message;
        int column; /* of item 200 */
    } lists[] = {
        {"build.steps", "more than 200 steps", 7},
        {"build.env", "more than 200 variables", 5},
        {"package.include", "more than 200 paths", 7},
        {"constants", "more than 200 constants", 5},
        {"scheduled_events", "more than 200 events", 5},
        {"tests", "more than 200 tests", 5},
    };
    for (int i = 0; i < 6; i++) {
        char *ok = with_items(i, 200);
        parse_ok(ok, &p);
        size_t nr[] = {p.nr_build_steps, p.nr_build_env, p.nr_package_include,
                       p.nr_constants,   p.nr_events,    p.nr_tests};
        cr_assert_eq(nr[i], 200, "%s", lists[i].key);
        pipeline_release(&p);
        free(ok);
        char *bad = with_items(i, 201);
        struct bad b = {bad, 205, lists[i].column, lists[i].key, lists[i].message};
        check_bad(&b, strlen(bad));
        free(bad);
    }

    /* file size */
    struct text big = {0};
    text_add(&big, "%s", minimal);
    while (big.len < PIPELINE_MAX_FILE)
        text_add(&big, "# %s\n", "padding padding padding padding padding padding padding");
    big.len = PIPELINE_MAX_FILE;
    big.buf[big.len - 1] = '\n';
    cr_assert_eq(pipeline_parse(big.buf, big.len, &p, &e), 0, "%s", e.message);
    pipeline_release(&p);
    struct bad too_big = {big.buf, 0, 0, "", "the file is larger than 256 KiB"};
    check_bad(&too_big, PIPELINE_MAX_FILE + 1);
    free(big.buf);

    /* one value of 64 KiB is fine, one byte more is not */
    for (size_t extra = 0; extra < 2; extra++) {
        struct text t = {0};
        text_add(&t, "version: 1\nbuild:\n  steps:\n    - make\n    - ");
        for (size_t i = 0; i < PIPELINE_MAX_SCALAR + extra; i++)
            text_add(&t, "x");
        text_add(&t, "\npackage: {include: [bin]}\n");
        if (!extra) {
            parse_ok(t.buf, &p);
            cr_assert_eq(strlen(p.build_steps[1]), PIPELINE_MAX_SCALAR);
            pipeline_release(&p);
        } else {
            struct bad b = {t.buf, 5, 7, "build.steps[1]", "the value is longer than 64 KiB"};
            check_bad(&b, t.len);
        }
        free(t.buf);
    }

    /* 16 levels are read (the error is about the key), the 17th is refused */
    static const struct bad nesting[] = {
        {"version: 1\nx: [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]\n", 2, 1, "x",
         "unknown key 'x' (known keys: version, runtime, build, package, run, constants, "
         "scheduled_events, tests)"},
        {"version: 1\nx: [[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]\n", 2, 19,
         "x[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]", "nested deeper than 16 levels"},
        {"version: 1\nx:\n  y:\n    z: [{a: {b: [[[[[[[[[[[[1]]]]]]]]]]]]}}]\n", 4, 27,
         "x.y.z[0].a.b[0][0][0][0][0][0][0][0][0][0]", "nested deeper than 16 levels"},
    };
    TABLE(nesting);

    /* more values than PIPELINE_MAX_NODES, each tiny: refused while reading */
    struct text many = {0};
    text_add(&many, "version: 1\nx: [");
    for (int i = 0; i < PIPELINE_MAX_NODES; i++)
        text_add(&many, "1,");
    text_add(&many, "1]\n");
    /* root, "version", "1", "x", the list: item k is value number 6 + k; value 16385 fails */
    struct bad nodes = {many.buf, 2, 5 + 2 * (PIPELINE_MAX_NODES - 5), "x[16379]",
                        "the file has more than 16384 values"};
    check_bad(&nodes, many.len);
    free(many.buf);

    static const struct bad hostile[] = {
        {"version: 1\nbuild: {steps: &x [make]}\npackage: {include: *x}\n", 3, 20,
         "package.include", "aliases are not supported (*x): write the value out"},
        {"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: [*b, *b, *b, *b, *b, *b, *b, *b]\n",
         2, 8, "b[0]", "aliases are not supported (*a): write the value out"},
        {"version: 1\n&k build: {steps: [make]}\n*k : x\n", 3, 1, "",
         "aliases are not supported (*k): write the value out"},
        {"version: 1\nbuild: {steps: [\"a\\0b\"]}\n", 2, 17, "build.steps[0]",
         "the value contains a NUL character"},
        {"version: 1\nbuild: {steps: [!!int 5]}\n", 2, 17, "build.steps[0]",
         "YAML tags are not supported (!!int)"},
        {"version: 1\nbuild: !custom {steps: [make]}\n", 2, 8, "build",
         "YAML tags are not supported (!custom)"},
        {"version: 1\nbuild: !!seq {steps: [make]}\n", 2, 8, "build",
         "YAML tags are not supported (!!seq)"},
        {"version: 1\n---\nversion: 1\n", 2, 1, "",
         "the file has more than one YAML document (a second '---')"},
        {"version: 1\nbuild: {steps: [\xff]}\n", 2, 17, "",
         "invalid YAML: invalid leading UTF-8 octet (byte 0xff)"},
        {"version: 1\nruntime: \"\xc3\xa9\xc3\xa9\x01\"\n", 2, 13, "",
         "invalid YAML: control characters are not allowed (byte 0x01)"},
        {"version: 1\nbuild: {steps: [make]\npackage: {include: [bin]}\n", 3, 1, "",
         "invalid YAML: did not find expected ',' or '}' (while parsing a flow mapping at line "
         "2)"},
        {"version: 1\n  build: x\n", 2, 8, "",
         "invalid YAML: mapping values are not allowed in this context"},
        {"version: 1\n\tbuild: x\n", 2, 1, "",
         "invalid YAML: found a tab character that violates indentation (while scanning a plain "
         "scalar at line 1)"},
        /* the file's text in messages and keys: control characters replaced, long text cut */
        {HEAD "\"evil\\nkey\\e[31m\": 1\n", 4, 1, "evil?key?[31m",
         "unknown key 'evil?key?[31m' (known keys: ..."},
        {HEAD "\"csi\\x9b31m\\x85\\xa0\": 1\n", 4, 1, "csi?31m?\xc2\xa0",
         "unknown key 'csi?31m?\xc2\xa0' (known keys: ..."},
        {HEAD "build2_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: "
              "1\n",
         4, 1, "build2_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...",
         "unknown key 'build2_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' (known keys: ..."},
        {HEAD "runtime: x\nbuild_\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
              "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9: 1\n",
         5, 1,
         "build_\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9...",
         "unknown key 'build_\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
         "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9...' (known keys: ..."},
    };
    TABLE(hostile);

    /* a raw NUL byte in the file, past the C string */
    static const char nul[] = "version: 1\nru\0ntime: x\n";
    struct bad raw_nul = {nul, 2, 3, "", "invalid YAML: control characters are not allowed..."};
    check_bad(&raw_nul, sizeof(nul) - 1);
    /* anchors alone are harmless and allowed */
    parse_ok("version: 1\nbuild: &b {steps: [&s make]}\npackage: &p {include: [bin]}\n", &p);
    pipeline_release(&p);
}

/* ---- the message a person reads ---- */

static void error_format(void)
{
    struct pipeline p;
    struct pipeline_error e;
    char buf[512];
    const char *yaml = "version: 1\nbuild:\n  steps: [make]\n  timeout: 10x\n";
    cr_assert_eq(parse(yaml, &p, &e), -EINVAL);
    pipeline_error_format(&e, "slipway.yml", buf, sizeof(buf));
    cr_assert_str_eq(buf, "slipway.yml:4:12: build.timeout: '10x' is not a duration (use s, m or "
                          "h, e.g. 10m)");
    pipeline_error_format(&e, NULL, buf, sizeof(buf));
    cr_assert_str_eq(buf, "slipway.yml:4:12: build.timeout: '10x' is not a duration (use s, m or "
                          "h, e.g. 10m)");
    pipeline_error_format(&e, "app/slipway.yml", buf, 21);
    cr_assert_str_eq(buf, "app/slipway.yml:4:12");
    buf[0] = 'x';
    pipeline_error_format(&e, "slipway.yml", buf, 1);
    cr_assert_str_eq(buf, "");
    pipeline_error_format(&e, "slipway.yml", buf, 0); /* writes nothing */

    cr_assert_eq(parse("version: 1\n  build: x\n", &p, &e), -EINVAL);
    pipeline_error_format(&e, "slipway.yml", buf, sizeof(buf));
    cr_assert_str_eq(buf, "slipway.yml:2:8: invalid YAML: mapping values are not allowed in this "
                          "context");

    cr_assert_eq(parse("", &p, &e), -EINVAL);
    pipeline_error_format(&e, "slipway.yml", buf, sizeof(buf));
    cr_assert_str_eq(buf, "slipway.yml: the file is empty: it needs at least version, "
                          "build.steps and package.include");

    /* the cut never splits a UTF-8 character */
    struct pipeline_error u = {.line = 1, .column = 1, .key = "k", .message = "\xc3\xa9\xc3\xa9"};
    pipeline_error_format(&u, "f", buf, 12); /* "f:1:1: k: " is 10 bytes, one byte short */
    cr_assert_str_eq(buf, "f:1:1: k: ");
    pipeline_error_format(&u, "f", buf, 13);
    cr_assert_str_eq(buf, "f:1:1: k: \xc3\xa9");
}

/* ---- the manifest ---- */

static json_t *manifest_of(const char *yaml)
{
    struct pipeline p;
    parse_ok(yaml, &p);
    char *text = pipeline_manifest_json(&p);
    cr_assert_not_null(text);
    pipeline_release(&p);
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, text);
    cr_assert_null(strchr(text, '\n'), "not compact: %s", text);
    free(text);
    return j;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_string(v), "%s is not a string", key);
    return json_string_value(v);
}

static void manifest_json(void)
{
    json_t *j = manifest_of(doc_example);
    cr_assert_eq(json_object_size(j), 5);
    cr_assert_str_eq(jstr(j, "runtime"), "c-static 1.0");
    json_t *run = json_object_get(j, "run");
    cr_assert_eq(json_object_size(run), 5);
    cr_assert_str_eq(jstr(run, "command"), "./bin/server");
    cr_assert_str_eq(jstr(run, "health"), "/healthz");
    cr_assert_eq(json_integer_value(json_object_get(run, "start_timeout_s")), 60);
    cr_assert_eq(json_integer_value(json_object_get(run, "stop_timeout_s")), 10);
    cr_assert_str_eq(jstr(run, "database"), "postgres");

    json_t *constants = json_object_get(j, "constants");
    cr_assert_eq(json_array_size(constants), 2);
    json_t *k = json_array_get(constants, 0);
    cr_assert_str_eq(jstr(k, "name"), "Main.Greeting");
    cr_assert_str_eq(jstr(k, "type"), "String");
    cr_assert_str_eq(jstr(k, "default"), "hello");
    cr_assert(json_is_false(json_object_get(k, "secret")));
    k = json_array_get(constants, 1);
    cr_assert_str_eq(jstr(k, "name"), "UnitTesting.RemoteApiPassword");
    cr_assert_str_eq(jstr(k, "default"), "");
    cr_assert(json_is_true(json_object_get(k, "secret")));

    json_t *events = json_object_get(j, "scheduled_events");
    cr_assert_eq(json_array_size(events), 1);
    json_t *ev = json_array_get(events, 0);
    cr_assert_str_eq(jstr(ev, "name"), "Main.Cleanup");
    cr_assert_str_eq(jstr(ev, "cron"), "*/5 * * * *");
    cr_assert_str_eq(jstr(ev, "command"), "./bin/cleanup");

    json_t *tests = json_object_get(j, "tests");
    cr_assert_eq(json_array_size(tests), 2);
    json_t *t = json_array_get(tests, 0);
    cr_assert_str_eq(jstr(t, "name"), "api");
    cr_assert_str_eq(jstr(t, "command"), "./tests/api.sh --junit out/junit.xml");
    cr_assert_str_eq(jstr(t, "junit"), "out/junit.xml");
    cr_assert(json_is_null(json_object_get(t, "unittesting")));
    t = json_array_get(tests, 1);
    cr_assert_str_eq(jstr(t, "name"), "unit");
    cr_assert(json_is_null(json_object_get(t, "command")));
    cr_assert(json_is_null(json_object_get(t, "junit")));
    cr_assert_str_eq(jstr(json_object_get(t, "unittesting"), "password_constant"),
                     "UnitTesting.RemoteApiPassword");
    json_decref(j);

    /* what the file leaves out is null or [], never missing */
    j = manifest_of(minimal);
    cr_assert_eq(json_object_size(j), 5);
    cr_assert(json_is_null(json_object_get(j, "runtime")));
    cr_assert(json_is_null(json_object_get(j, "run")));
    cr_assert_eq(json_array_size(json_object_get(j, "constants")), 0);
    cr_assert(json_is_array(json_object_get(j, "scheduled_events")));
    cr_assert(json_is_array(json_object_get(j, "tests")));
    json_decref(j);

    /* text survives the trip: quotes, backslashes, UTF-8, a default left out */
    j = manifest_of(HEAD "runtime: 'say \"hi\" \\ caf\xc3\xa9'\n"
                         "run: {command: \"a\\tb\", start_timeout: 2m}\n"
                         "constants: [{name: M.X, type: Decimal}, {name: M.B, type: Boolean, "
                         "default: False}]\n");
    cr_assert_str_eq(jstr(j, "runtime"), "say \"hi\" \\ caf\xc3\xa9");
    run = json_object_get(j, "run");
    cr_assert_str_eq(jstr(run, "command"), "a\tb");
    cr_assert(json_is_null(json_object_get(run, "health")));
    cr_assert_eq(json_integer_value(json_object_get(run, "start_timeout_s")), 120);
    cr_assert(json_is_null(json_object_get(run, "database")));
    k = json_array_get(json_object_get(j, "constants"), 0);
    cr_assert_str_eq(jstr(k, "type"), "Decimal");
    cr_assert(json_is_null(json_object_get(k, "default")));
    k = json_array_get(json_object_get(j, "constants"), 1);
    cr_assert_str_eq(jstr(k, "default"), "false");
    json_decref(j);

    /* run.database */
    j = manifest_of(HEAD "run: {command: ./srv, database: postgres}\n");
    run = json_object_get(j, "run");
    cr_assert_eq(json_object_size(run), 5);
    cr_assert_str_eq(jstr(run, "database"), "postgres");
    json_decref(j);
}

static void build_limits(void)
{
    struct pipeline p;
    parse_ok("version: 1\nbuild:\n  steps: [make]\n  memory: 512MB\n  pids: 64\n  disk: 5GB\n"
             "package: {include: [bin]}\n",
             &p);
    cr_assert_eq(p.build_memory, 512LL << 20);
    cr_assert_eq(p.build_pids, 64);
    cr_assert_eq(p.build_disk, 5LL << 30);
    pipeline_release(&p);
}

Test(pipeline, files_that_parse)
{
    build_limits();
    doc_example_parses_field_by_field();
    minimal_file_gets_the_defaults();
    durations();
    accepted_spellings();
}

Test(pipeline, structure_errors)
{
    TABLE(structure_errors);
}

Test(pipeline, value_errors)
{
    TABLE(value_errors);
}

Test(pipeline, limits_and_hostile_input)
{
    limits();
}

Test(pipeline, error_format)
{
    error_format();
}

Test(pipeline, manifest_json)
{
    manifest_json();
}
