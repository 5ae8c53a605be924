/* The subcommands main() dispatches to, each described by its option table (options.h),
 * which also gives its --help, its part of the man page and its bash completion. Each
 * main takes the arguments after its name (argv[0] is the command's last word) and
 * returns the process exit status. A new command: its spec here, one line in main.c's
 * commands[]. */
#ifndef QUIRE_CMDS_H
#define QUIRE_CMDS_H

#include "options.h"

int cmd_decrypt(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_grin_list(int argc, char **argv);
int cmd_grin_request(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_export(int argc, char **argv);
int bench_decrypt(int argc, char **argv);
int bench_queue(int argc, char **argv);

extern const struct cmd_spec cmd_run_spec, cmd_decrypt_spec, cmd_report_spec;
extern const struct cmd_spec cmd_grin_list_spec, cmd_grin_request_spec;
extern const struct cmd_spec cmd_extract_spec, cmd_export_spec;
extern const struct cmd_spec bench_decrypt_spec, bench_queue_spec;

#endif
