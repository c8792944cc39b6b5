/* pipeline — reads an app's slipway.yml (the contract: shared/design/pipeline-file.md; the user's
 * view: docs/slipway-yml.md) into a checked struct pipeline, and writes the parts a package
 * manifest copies as JSON. A leaf on libyaml and jansson: it does not read files, log, run steps
 * or schedule events (cron expressions are only checked, with base/cron).
 *
 * Everything in the file is checked before pipeline_parse() returns 0: unknown keys, wrong types,
 * durations, names, cron expressions, references between sections. A struct pipeline is therefore
 * always complete and in range; its users need not check it again.
 */
#ifndef SLIPWAY_BUILDER_PIPELINE_H
#define SLIPWAY_BUILDER_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The file's name, at the top of an app's repository. */
#define PIPELINE_FILE "slipway.yml"

/* Limits against hostile files. Going past one is an error like any other. PIPELINE_MAX_FILE is
 * also how much of the file a reader takes from the repository (pipeline_parse refuses more). */
#define PIPELINE_MAX_FILE   (256 * 1024) /* bytes of YAML */
#define PIPELINE_MAX_DEPTH  16           /* mappings and lists nested in each other */
#define PIPELINE_MAX_NODES  16384        /* values in the whole file (keys count too) */
#define PIPELINE_MAX_SCALAR (64 * 1024)  /* bytes of one value */
#define PIPELINE_MAX_ITEMS  200  /* each of: steps, env, includes, constants, events, tests */
#define PIPELINE_MAX_NAME   128  /* bytes of a constant, event or test name */
#define PIPELINE_MAX_PATH   4096 /* bytes of a package.include or junit path */

/* Durations: a bare number of seconds, or a number with s, m or h; always within these. */
#define PIPELINE_MIN_DURATION_S 1
#define PIPELINE_MAX_DURATION_S (24 * 3600)

#define PIPELINE_DEFAULT_BUILD_TIMEOUT_S (30 * 60)
#define PIPELINE_DEFAULT_START_TIMEOUT_S 60
#define PIPELINE_DEFAULT_STOP_TIMEOUT_S  10

/* Build limits (build.memory, build.pids, build.disk): their defaults and what the file may say.
 * The server may allow less (runner.h); sizes are bytes. */
#define PIPELINE_DEFAULT_MEMORY (2LL << 30)
#define PIPELINE_DEFAULT_PIDS   1024
#define PIPELINE_DEFAULT_DISK   (2LL << 30)
#define PIPELINE_MIN_MEMORY     (16LL << 20)
#define PIPELINE_MIN_PIDS       16
#define PIPELINE_MAX_PIDS       1000000
#define PIPELINE_MIN_DISK       (1LL << 20)
#define PIPELINE_MAX_SIZE       (1LL << 50) /* 1024 TB */

/* The one version of the file format this code reads. */
#define PIPELINE_VERSION 1

enum pipeline_type { PIPELINE_STRING, PIPELINE_INTEGER, PIPELINE_DECIMAL, PIPELINE_BOOLEAN };

struct pipeline_env_var {
    char *name;  /* [A-Za-z_][A-Za-z0-9_]*, unique within build.env */
    char *value; /* the scalar's text: `JOBS: 4` gives "4"; may be "" */
};

struct pipeline_run {
    bool present;            /* false when the file has no `run:`; then the strings are NULL */
    char *command;           /* non-blank */
    char *health;            /* an HTTP path starting with '/', or NULL when not given */
    int64_t start_timeout_s; /* always set, to the default when not given or not present */
    int64_t stop_timeout_s;
    bool database; /* `database: postgres`, the only value accepted: a PostgreSQL database per
                    * environment (the instance's DATABASE_URL); false when not given */
};

struct pipeline_constant {
    char *name; /* Module.Name; unique, also after '.' becomes '_' (MX_Module_Name) */
    enum pipeline_type type;
    /* NULL when the file gives no default (the value must then be set per environment).
     * Otherwise it matches the type: an Integer is a whole number in int64 range, a Decimal is
     * [+-]digits[.digits], a Boolean is "true" or "false" (normalised to lowercase). */
    char *default_value;
    bool secret;
};

struct pipeline_event {
    char *name;    /* Module.Name, unique among events */
    char *cron;    /* as written in the file; cron_parse() (base/cron.h) accepts it */
    char *command; /* non-blank */
};

struct pipeline_test {
    char *name; /* [A-Za-z0-9][A-Za-z0-9_.-]*, unique among tests */
    /* Exactly one of `command` and `unittesting_password_constant` is non-NULL. */
    char *command;
    char *junit; /* a relative path to a JUnit XML report, or NULL; only with `command` */
    char *unittesting_password_constant; /* names a declared constant */
};

/* A parsed slipway.yml. Every string and array is owned by the struct and freed by
 * pipeline_release(). Arrays hold exactly nr_* entries (NULL when nr_* is 0). */
struct pipeline {
    int version;        /* PIPELINE_VERSION */
    char *runtime;      /* free text, NULL when not given */
    char **build_steps; /* at least one, each non-blank; run in order with /bin/sh -e */
    size_t nr_build_steps;
    int64_t build_timeout_s;
    bool build_network;
    int64_t build_memory; /* bytes, always set (the default when not given) */
    int64_t build_pids;   /* processes and threads at once */
    int64_t build_disk;   /* bytes of the build's directory (workspace and /tmp) */
    struct pipeline_env_var *build_env;
    size_t nr_build_env;
    char **package_include; /* at least one; relative, no ".." component, no control chars */
    size_t nr_package_include;
    struct pipeline_run run;
    struct pipeline_constant *constants;
    size_t nr_constants;
    struct pipeline_event *events; /* `scheduled_events` in the file */
    size_t nr_events;
    struct pipeline_test *tests;
    size_t nr_tests;
};

#define PIPELINE_ERROR_KEY_MAX     128
#define PIPELINE_ERROR_MESSAGE_MAX 256

/* What is wrong with a file, and where. Parts of the file quoted in `key` and `message` are cut
 * short and have control characters replaced, so both are safe to print or log. */
struct pipeline_error {
    int line, column; /* 1-based (column counts characters); 0 when not known */
    /* The dotted path of the value at fault, like "build.timeout" or "constants[1].type"
     * (list indexes are 0-based); "" when the fault is not in one value (e.g. invalid YAML). */
    char key[PIPELINE_ERROR_KEY_MAX];
    char message[PIPELINE_ERROR_MESSAGE_MAX]; /* lowercase, no trailing period, never "" */
};

/* Parses and checks text[0..len): UTF-8 (a leading BOM is skipped), need not be NUL-terminated,
 * at most PIPELINE_MAX_FILE bytes. One YAML document; aliases, tags other than !!str, keys that
 * are not text, duplicate keys and NUL characters are refused. The first problem found is
 * reported; `version` is checked before anything else, so a file of another version is told so.
 * Returns 0 and fills *out (the caller releases it with pipeline_release), or:
 *   -EINVAL  the file is wrong: *err says what and where (when err is not NULL);
 *   -ENOMEM  out of memory (err says so too).
 * On error *out is not touched and nothing needs releasing. The file name is not an argument:
 * pipeline_error_format() adds it. */
int pipeline_parse(const char *text, size_t len, struct pipeline *out, struct pipeline_error *err);

/* Frees everything the struct owns and zeroes it. A zeroed struct may be released (again). */
void pipeline_release(struct pipeline *p);

/* The constant with that exact name, or NULL. */
const struct pipeline_constant *pipeline_constant_find(const struct pipeline *p, const char *name);

/* "String", "Integer", "Decimal" or "Boolean" (the names the file and the settings API use). */
const char *pipeline_type_name(enum pipeline_type type);

/* Formats an error the way a person reads it, always NUL-terminated (cut short to fit cap):
 *   "slipway.yml:3:5: build.timeout: '10x' is not a duration (use s, m or h, e.g. 10m)"
 * The position is left out when line is 0, the key when it is "". `filename` NULL means
 * PIPELINE_FILE. */
void pipeline_error_format(const struct pipeline_error *err, const char *filename, char *buf,
                           size_t cap);

/* The sections a package manifest copies, as compact JSON text (caller frees with free()), or
 * NULL when out of memory. Every key is always present; what the file leaves out is null:
 *   {"runtime": "c-static 1.0" | null,
 *    "run": {"command", "health": str|null, "start_timeout_s": int, "stop_timeout_s": int,
 *            "database": "postgres" | null} | null,
 *    "constants": [{"name", "type": "String"|..., "default": str|null, "secret": bool}],
 *    "scheduled_events": [{"name", "cron", "command"}],
 *    "tests": [{"name", "command": str|null, "junit": str|null,
 *               "unittesting": {"password_constant": str} | null}]}
 * Lists keep the file's order. */
char *pipeline_manifest_json(const struct pipeline *p);

#endif
