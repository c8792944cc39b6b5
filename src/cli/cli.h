/* cli — the commands of the `slipway` binary. Each returns the process exit code:
 * 0 success, 1 failure (with a message on stderr), 2 bad usage. */
#ifndef SLIPWAY_CLI_H
#define SLIPWAY_CLI_H

int cli_serve(int argc, char **argv);
int cli_admin(int argc, char **argv);

#endif
