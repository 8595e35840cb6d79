/*
 * cmd.h - the analyzer's commands; main.c dispatches to them.
 */
#ifndef HD_CMD_H
#define HD_CMD_H

/* Exit codes of every command. */
#define EXIT_OK     0
#define EXIT_NO     1   /* the answer is no: a check failed */
#define EXIT_USAGE  2   /* usage error or unreadable input */

int cmd_top(int argc, char **argv);
int cmd_diff(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_leaks(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_trend(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_bundle(int argc, char **argv);

/* Evaluate the gate of check, leaks and run --check on the snapshots named
 * by paths, write its report and baseline as o asks: EXIT_OK, EXIT_NO
 * (over budget) or EXIT_USAGE (after an error line).  cmd_check.c. */
struct gate_opts;
int check_snapshots(struct gate_opts *o, char **paths, int npaths);

/* Print "heapdelta: MSG" and the command's short usage on stderr; returns
 * EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print the command's full help on stdout; returns EXIT_OK. */
int show_help(const char *cmd);

#endif /* HD_CMD_H */
