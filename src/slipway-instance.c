/* slipway-instance — the launcher of app instances and scheduled events as a program of its own:
 * `slipway instance` (deploy/instance.h) linked with libc alone, so that starting one costs a
 * millisecond instead of loading every library the server links (about 7 ms). The server runs
 * it when it sits beside the slipway binary, else `slipway instance`. Same command line: an
 * optional first argument "instance", then the options instance.h lists. */
#include <string.h>

#include "deploy/instance.h"

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "instance") == 0)
        return instance_main(argc - 1, argv + 1);
    argv[0] = "instance";
    return instance_main(argc, argv);
}
