/* One option table per command. getopt_long's options, `quire COMMAND --help`, the man
 * page's option lists and the bash completion all come from it (tools/gen-docs reads the
 * tables through `quire help --json`), so they cannot drift.
 *
 * Declaring a command:
 *   enum { OPT_OUT = 'o', OPT_THREADS = 256 };      a letter is also the short option
 *   static const struct opt decrypt_opts[] = {
 *       OPT("output", OPT_OUT, "OUT", "stdout", "Where the plaintext goes.", .values = OPT_FILE),
 *       OPT("threads", OPT_THREADS, "N", NULL, "1 or 2.", .section = "Tuning"),
 *       {0},
 *   };
 *   const struct cmd_spec cmd_decrypt_spec = {"decrypt", "[IN|-]", ..., decrypt_opts, cmd_decrypt};
 * and parsing it, with a setter that stores each option (0, or OPTS_USAGE from the value
 * parsers below):
 *   static int set(void *ctx, int key, const char *arg) { switch (key) { ... } return 0; }
 *   int next = opts_parse(&cmd_decrypt_spec, argc, argv, set, &opts);
 *   if (next < 0)
 *       return opts_exit_status(next);   0 after --help, 2 after a usage error
 *   operands: argv[next .. argc), between the spec's min_operands and max_operands
 * --help (-h) is added to every command; do not declare it. */
#ifndef QUIRE_CLI_OPTIONS_H
#define QUIRE_CLI_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

/* What the completion offers for an option's value or a command's operands: a file, a
 * directory, or else the listed words separated by spaces ("text json"). */
#define OPT_FILE "@file"
#define OPT_DIR  "@dir"

struct opt {
        const char *name; /* long name, without "--" */
        int key;          /* what set() gets (opts_parse); a letter is also the short option -key */
        const char *arg;  /* the value's placeholder ("N", "FILE"); NULL: a flag */
        const char *def;  /* the default as --help shows it; NULL: none, or the help says */
        const char *help; /* sentences, wrapped by the formatters; no markup */
        /* The heading this option and the ones after it stand under (NULL: the previous
         * option's; the first defaults to "Options"). */
        const char *section;
        const char *values; /* OPT_FILE, OPT_DIR, "word word", or NULL */
};

/* An entry: name, key, arg, def and help, then designated .section and .values if any. */
#define OPT(name_, key_, arg_, def_, help_, ...)                                                   \
        {                                                                                          \
                .name = (name_), .key = (key_), .arg = (arg_), .def = (def_), .help = (help_),     \
                __VA_ARGS__                                                                        \
        }

struct cmd_spec {
        const char *name;     /* "run", or "bench decrypt" for a command's subcommand */
        const char *operands; /* synopsis after [OPTIONS], e.g. "[BARCODES_FILE|-]"; or NULL */
        const char *operand_values;     /* completion of operands, as struct opt's values */
        int min_operands, max_operands; /* opts_parse enforces them */
        const char *summary;            /* one line for `quire --help` */
        const char *description;        /* paragraphs separated by "\n\n"; no markup */
        const struct opt *opts;         /* ends with {0} */
        /* Runs the command: argv[0] is its last word ("run", "decrypt"); returns the exit
         * status. */
        int (*main)(int argc, char **argv);
};

enum { OPTS_HELP = -2, OPTS_USAGE = -3 };
/* Reserved for --help/-h: no command declares it. */
#define OPTS_KEY_HELP 'h'
#define OPTS_MAX      64

/* Parses argv's options, calling set for each one; then checks the operand count. Returns
 * the argv index of the first operand, or OPTS_HELP (help printed on stdout) or OPTS_USAGE
 * (one line printed on stderr). */
int opts_parse(const struct cmd_spec *cmd, int argc, char **argv,
               int (*set)(void *ctx, int key, const char *arg), void *ctx);
/* What main returns after opts_parse answered OPTS_HELP (0) or OPTS_USAGE (2). */
int opts_exit_status(int parse_result);

/* Value parsers for option values: 0, or OPTS_USAGE after printing one line naming the
 * option, what it expects and what it got. */
int opts_count(const struct cmd_spec *c, int key, const char *arg, uint64_t lo, uint64_t hi,
               uint64_t *out);
/* Sizes with binary suffixes (util_parse_size): 64MiB, 5M, 4096. */
int opts_size(const struct cmd_spec *c, int key, const char *arg, uint64_t lo, uint64_t hi,
              uint64_t *out);
/* One of the option's values words ("text json"): *index is its position. */
int opts_choice(const struct cmd_spec *c, int key, const char *arg, unsigned *index);
/* A file the command will read later (a CA bundle): refused now, in one line naming it,
 * rather than book by book once connections start. 0 or OPTS_USAGE. */
int opts_readable_file(const struct cmd_spec *c, int key, const char *arg);
/* Prints "quire: --NAME: WHY (see quire CMD --help)", or without "--NAME: " for key 0, and
 * returns OPTS_USAGE. */
int opts_usage_error(const struct cmd_spec *c, int key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const struct opt *opts_find(const struct cmd_spec *c, int key);
/* `quire CMD --help`: synopsis, description, options by section, each with its default. */
void opts_print_help(const struct cmd_spec *c, FILE *out);
/* `quire --help`: every command's synopsis and summary. */
void opts_print_commands(const struct cmd_spec *const *cmds, size_t n, FILE *out);
/* Every table as JSON, for tools/gen-docs: [{"name", "operands", "operand_values",
 * "summary", "description", "options": [{"name", "short", "arg", "default", "help",
 * "section", "values"}]}], --help included. Returns 0 or -errno. */
int opts_dump_json(const struct cmd_spec *const *cmds, size_t n, FILE *out);

#endif
