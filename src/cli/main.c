/* slipway — one binary: the server (`serve`), offline administration (`admin`) and the route
 * table (`routes`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "cli/cli.h"
#include "deploy/instance.h"
#include "base/banned.h"

static const char usage[] =
    "usage: slipway <command> [options]\n"
    "\n"
    "Slipway is a self-hosted CI/CD platform: git hosting, builds, environments and\n"
    "Mendix-compatible APIs.\n"
    "\n"
    "commands:\n"
    "  serve   run the platform server on a data directory\n"
    "  admin   administer users, keys, tokens, apps and rights on a data directory,\n"
    "          whether or not a server runs on it\n"
    "  routes  print every endpoint with the credentials, token scopes, app role and\n"
    "          rights it needs (JSON)\n"
    "\n"
    "options:\n"
    "  -h, --help      show this help ('slipway <command> --help' for a command's)\n"
    "  --version       print the version\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        puts("slipway " SLIPWAY_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "serve"))
        return cli_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "admin"))
        return cli_admin(argc - 1, argv + 1);
    /* internal, not in the usage: the launcher the server starts for each app instance */
    if (!strcmp(cmd, "instance"))
        return instance_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "routes") && argc == 2) {
        char *text = api_routes_describe();
        if (!text)
            return 1;
        puts(text);
        free(text);
        return 0;
    }
    fprintf(stderr, "slipway: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}
