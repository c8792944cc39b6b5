/* strv — NULL-terminated string arrays; see strv.h. */
#include "base/strv.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "base/banned.h"

/* Appends s, which the array takes over. */
static int push(char ***v, size_t *nr, char *s)
{
    if (*nr > SIZE_MAX / sizeof(char *) - 2)
        return -ENOMEM;
    char **grown = realloc(*v, (*nr + 2) * sizeof(char *));
    if (!grown)
        return -ENOMEM;
    *v = grown;
    grown[*nr] = s;
    grown[++*nr] = NULL;
    return 0;
}

int strv_add(char ***v, size_t *nr, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        return -ENOMEM;
    int r = push(v, nr, copy);
    if (r)
        free(copy);
    return r;
}

int strv_add_env(char ***v, size_t *nr, const char *name, const char *value)
{
    if (!value)
        return 0;
    char *s = NULL;
    if (asprintf(&s, "%s=%s", name, value) < 0)
        return -ENOMEM;
    int r = push(v, nr, s);
    if (r)
        free(s);
    return r;
}

void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}
