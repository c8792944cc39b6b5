/* instance — the launcher of one app instance or one scheduled event: `slipway instance`, an
 * internal subcommand the server's engine spawns, never typed by a user. It runs the app as its
 * child and writes the app's output, line by line and stamped, into the environment's daily log
 * file. It outlives the server (which re-adopts running instances by pid after a restart): its
 * own stdin, stdout and stderr are /dev/null, and it ignores SIGPIPE, SIGHUP, SIGINT and SIGTERM.
 * It does not restart the app, apply limits or choose the environment: that is the engine's.
 *
 *   slipway instance --log-dir DIR --label L --cwd DIR [--uid N --gid N] [--max-line N]
 *                    -- PROGRAM [ARG...]
 *
 *   --log-dir DIR  absolute; lines go to DIR/app-YYYY-MM-DD.log by the LOCAL date of each line
 *                  (opened O_APPEND|O_CREAT|O_NOFOLLOW|O_CLOEXEC, 0640; a new file when the date
 *                  changes). Other launchers append to the same file: each write holds whole
 *                  lines. When the file cannot be opened, lines are dropped (the app never
 *                  waits for the log) and the open is tried again at the next line 10 seconds
 *                  later or on a new date.
 *   --label L      who speaks: an instance number ("0") or "event:Main.Cleanup";
 *                  [A-Za-z0-9_.:-]{1,100}
 *   --cwd DIR      the app's working directory (the release directory)
 *   --uid N --gid N  both or neither, neither 0: the app runs as uid/gid N with no
 *                  supplementary groups and no_new_privs; its start fails when it would keep a
 *                  capability. Without them it runs as the launcher does.
 *   --max-line N   bytes of a line's text, 64 to 1048576 (default 16384)
 *   PROGRAM        a path (not searched in PATH), run with ARGs and the launcher's own
 *                  environment, unchanged (the engine gives the launcher the app's).
 *
 * The app: same process group as the launcher (a SIGTERM to the group reaches it directly),
 * default signal dispositions and an empty signal mask, stdin /dev/null, stdout and stderr one
 * pipe to the launcher, no other descriptor. Once it has started, the launcher drops every
 * capability it has (bounding and ambient sets included; as root it stays uid 0, for the log
 * directory) and sets no_new_privs.
 *
 * The log, one line per line of output, stdout and stderr alike:
 *   2026-12-06T01:45:00.123+01:00 [L] text
 * local time with its UTC offset, to the millisecond (when the launcher read it). The text:
 * bytes that are not UTF-8 become U+FFFD, control characters (C0 but tab, DEL, C1) become '?',
 * a CR before the newline is dropped. A line longer than --max-line bytes is cut (at a UTF-8
 * character boundary) into pieces of at most that many bytes; every piece but the last ends with
 * "…" (U+2026, not counted). A last line without a newline is written when the app has exited.
 * The launcher's own lines, never the command (it may hold secrets):
 *   [L] started (pid P)                  the app runs
 *   [L] exited with status N             then the launcher exits with N
 *   [L] killed by signal S               then the launcher exits with 128+S
 *   [L] cannot start: WHAT: REASON       then the launcher exits with 126 (not executable),
 *                                        127 (not found) or 125 (anything else)
 * Output is read until the app has exited (not until every process that inherited the pipe
 * has: what the app left behind is not waited for), then what is already in the pipe.
 *
 * Exit status: the app's (0-255, 128+signal), 126/127 as above, 125 when the launcher itself
 * failed, 125 with a message on stderr for a bad command line (before anything runs).
 */
#ifndef SLIPWAY_DEPLOY_INSTANCE_H
#define SLIPWAY_DEPLOY_INSTANCE_H

#define INSTANCE_MAX_LINE_DEFAULT 16384
#define INSTANCE_MAX_LABEL        100

/* `slipway instance` (argv[0] is "instance"); returns the process's exit status as above. */
int instance_main(int argc, char **argv);

#endif
