/* deploy internals shared by its files; not for other modules. */
#ifndef SLIPWAY_DEPLOY_INT_H
#define SLIPWAY_DEPLOY_INT_H

#include <stdarg.h>

#include "deploy/deploy.h"

struct deploy_state {
    struct deploy_config cfg;
    bool initialized;
    bool have_router; /* nginx runs in front of the environments */
    bool have_database;
    unsigned char settings_key[32]; /* seals secret constants: HMAC(server secret, "settings") */
};
extern struct deploy_state deploy_g;

/* Fills err (always returns -1 for `return deploy_fail(...)`). */
__attribute__((format(printf, 3, 4))) int deploy_fail(struct deploy_error *err,
                                                      enum deploy_err kind, const char *fmt, ...);
/* The first port of slot k's block, and its instance i's port. */
int deploy_slot_port(int slot);
int deploy_instance_port(int slot, int idx);
/* The release of a package: DIR/releases/<AppId>/<PackageId>, unpacked (validated) from the
 * package file when missing, its manifest as manifest.json in it. 0, or -errno with err. */
int deploy_release_ensure(const char *app_id, const char *package_id, char *err, size_t err_cap);
/* The environment's directory and its data/, logs/ and access/ (made when missing, data/ owned
 * by the environment's uid). 0 or -errno. */
int deploy_env_dirs(const char *app_id, const struct store_env *env);
/* The uid (and gid) the environment's instances run as. */
unsigned deploy_env_uid(const struct store_env *env);
/* The database name of an environment: "env_<slot>". */
void deploy_db_name(const struct store_env *env, char out[32]);

/* A setting's value (kind "constant" or "event") as the instances get it: 0 and *value (a new
 * string, opened when secret; NULL when the environment has no value: the default applies), or
 * -errno. */
int deploy_setting_value(int64_t env, const char *kind, const char *name, bool secret,
                         char **value);
/* The supervisor, the engine's owner "apps" (supervisor.c): registered by deploy_init with the
 * cgroup sub-tree for instances (-1: none) and the server's tree name. For the tests only: the
 * environment variable SLIPWAY_TEST_ROUTER_DELAY_MS holds each router configuration that long
 * before it is applied, so that a test can see what the API says while one is on its way
 * (tests/e2e/test_deploy_restart.py). */
int deploy_supervisor_init(int cgroup_fd, const char *tree);
void deploy_supervisor_free(void);
/* The cgroup sub-tree the instances' groups are in (*cgroup_fd: borrowed, -1 when there is none)
 * and the names of the environment's instances' groups in it (*groups: a strv, NULL when none;
 * caller frees), from the instances' rows. Any thread. 0, or -errno. */
int deploy_instance_groups(int64_t env, int *cgroup_fd, char ***groups);
/* Backups (backups.c): the engine's owner "backups", registered by deploy_init. */
int deploy_backups_init(void);

#endif
