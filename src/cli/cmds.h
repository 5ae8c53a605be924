/* The subcommands main() dispatches to. Each takes the arguments after its name
 * (argv[0] is the subcommand) and returns the process exit status. */
#ifndef QUIRE_CMDS_H
#define QUIRE_CMDS_H

int cmd_decrypt(int argc, char **argv);
int cmd_run(int argc, char **argv);
/* quire bench decrypt|queue [...] */
int cmd_bench(int argc, char **argv);

#endif
