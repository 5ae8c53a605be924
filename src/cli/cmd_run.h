/* quire run's pieces, private to the command: what it was told (cmd_run_opts.c parses it,
 * from the option table there), --dry-run's checks (cmd_run_dry.c) and the run itself
 * (cmd_run.c). */
#ifndef QUIRE_CLI_CMD_RUN_H
#define QUIRE_CLI_CMD_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "derived_sinks.h"
#include "quire/engine/run.h"
#include "quire/io/sinks.h"
#include "quire/io/sources.h"
#include "run_grin.h"

/* Everything quire run was told, sorted by who takes it. */
struct run_opts {
        struct run_config run;
        struct source_config source;
        struct sink_config sink;
        struct derived_sinks derived; /* --ocr-dest, --marc-dest, the checks */
        const char *passfile;
        char *passphrase;
        bool version, dry_run;
        struct run_grin grin; /* --grin */
};

/* Parses argv into o. Returns 0 to run, 1 when --help/--version was answered, -1 on a
 * usage error (already reported). */
int cmd_run_parse_args(int argc, char **argv, struct run_opts *o);

/* --dry-run: everything a run would check, and the counts of what it would do; nothing
 * written. Returns the exit status. */
int cmd_run_dry_run(struct run_opts *o);

#endif
