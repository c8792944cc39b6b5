/* strv — a growable, NULL-terminated array of strings that it owns: an argv or an environment
 * built before a spawn (base/proc takes `char *const env[]`).
 *
 * Lifecycle: `char **env = NULL; size_t nr = 0;`, then strv_add() / strv_add_env() (each grows
 * the array with realloc, copies what it is given and keeps env NULL-terminated, so env can be
 * passed on at any time), then strv_free(env). On an error the array stays as it was, valid and
 * NULL-terminated (or still NULL), and is freed the same way; callers may chain adds with `||`
 * and check once.
 */
#ifndef SLIPWAY_BASE_STRV_H
#define SLIPWAY_BASE_STRV_H

#include <stddef.h>

/* Appends a copy of s; 0, or -ENOMEM. */
int strv_add(char ***v, size_t *nr, const char *s);
/* Appends "NAME=value"; a NULL value appends nothing (the variable stays unset). 0, or -ENOMEM. */
int strv_add_env(char ***v, size_t *nr, const char *name, const char *value);
/* Frees every string and the array; NULL is a no-op. */
void strv_free(char **v);

#endif
