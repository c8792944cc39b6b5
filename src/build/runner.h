/* runner — the build engine: one thread that owns every build process.
 *
 * The packages table is the queue: the API inserts a Queued row and calls runner_wake(); the
 * engine claims rows oldest first (at most `executors` at once), exports the revision into a
 * fresh workspace, reads its slipway.yml, runs each build step with /bin/sh -e under bubblewrap
 * (read-only system, writable workspace, private /tmp, no network unless build.network, no view
 * of the data directory, an allowlisted environment), writes a capped build log, enforces
 * build.timeout and cancellation by killing the whole sandbox, and on success writes the package
 * (atomically) and tags the commit with the package's version.
 *
 * Exporting a revision and writing a package run on worker threads, so that one large build does
 * not hold up the others; each step runs in a cgroup v2 group of its own where the host allows;
 * a bubblewrap sandbox per free executor is set up ahead for the next build's first step.
 *
 * After a crash, builds that were running are marked Failed at the next start (the server never
 * resumes half-run steps); Queued builds simply run.
 */
#ifndef SLIPWAY_BUILD_RUNNER_H
#define SLIPWAY_BUILD_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

struct runner_config {
    const char *data_dir;
    unsigned executors;     /* builds at once (>= 1) */
    bool unsafe_no_sandbox; /* run steps without bubblewrap (when it is missing) */
    size_t max_log;         /* bytes of build log kept per build */
    /* Retention, after each Succeeded build: the app keeps its newest keep_packages ended
     * packages (0: all); older ones go with their files and logs, except those an environment
     * holds. Queued and Building ones never count and never go. */
    unsigned keep_packages;
};

/* Starts the engine thread (after failing builds left Building by a crash). 0, or -errno. */
int runner_start(const struct runner_config *cfg);
/* Tells the engine that the queue changed (a new build, a cancel). Thread-safe, never blocks. */
void runner_wake(void);
/* Stops the engine: running builds are killed and marked Failed. */
void runner_stop(void);
/* Whether builds can run (bubblewrap found, or the unsafe mode); the reason when not. */
bool runner_can_build(const char **why);

/* Where a package's files live: DIR/packages/<AppId>/<PackageId>.tar.zst and
 * DIR/logs/builds/<PackageId>.log. Caller frees. */
char *runner_package_path(const char *data_dir, const char *app_id, const char *package_id);
char *runner_log_path(const char *data_dir, const char *package_id);

#endif
