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
 * builds without build.network run their steps in the long-lived executor of their slot, which
 * keeps the user and network namespaces and sets up each step's sandbox ahead (runner.c).
 *
 * Steps run as an unprivileged user with no capabilities (base/sandbox.h), with the build's
 * limits: build.pids and build.memory through the cgroup controllers the host has (the build log
 * says which are missing), build.disk as RLIMIT_FSIZE and a check of the build's directory every
 * second or so while a step runs and after each step (the build fails past it).
 *
 * After a crash, builds that were running are marked Failed at the next start (the server never
 * resumes half-run steps); Queued builds simply run.
 */
#ifndef SLIPWAY_BUILDER_RUNNER_H
#define SLIPWAY_BUILDER_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;

/* The paths it uses come from base/layout (layout_init() before runner_start()). */
struct runner_config {
    struct engine *engine;  /* the builds are one of its owners (engine/engine.h) */
    unsigned executors;     /* builds at once (>= 1) */
    bool unsafe_no_sandbox; /* run steps without bubblewrap (when it is missing) */
    size_t max_log;         /* bytes of build log kept per build */
    /* Retention, after each Succeeded build: the app keeps its newest keep_packages ended
     * packages (0: all); older ones go with their files and logs, except those an environment
     * holds. Queued and Building ones never count and never go. */
    unsigned keep_packages;
    /* Who runs build steps when the server is root (NULL: SANDBOX_DEFAULT_USER, made when it is
     * missing); a server run by another user runs them as itself. Never root: see base/sandbox.h */
    const char *sandbox_user;
    /* The most a slipway.yml may ask for (build.memory, build.pids, build.disk); 0: the
     * RUNNER_MAX_* defaults. A larger value in the file is lowered to this, and the log says so. */
    int64_t max_memory, max_pids, max_disk;
};

#define RUNNER_MAX_MEMORY (8LL << 30)
#define RUNNER_MAX_PIDS   8192
#define RUNNER_MAX_DISK   (20LL << 30)

/* Cleans what a crashed server left (builds left Building are failed, their sandboxes and
 * workspaces go) and registers the builds with the engine, before the engine starts: from then
 * on the engine's thread runs them. 0, or -errno. */
int runner_start(const struct runner_config *cfg);
/* Tells the engine that the queue changed (a new build, a cancel). Thread-safe, never blocks. */
void runner_wake(void);
/* Releases what the runner holds, after engine_stop() (which killed the running builds and marked
 * them Failed). */
void runner_stop(void);
/* Whether builds can run (bubblewrap found, or the unsafe mode); the reason when not. */
bool runner_can_build(const char **why);

#endif
