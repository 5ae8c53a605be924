/* quire: moves encrypted book archives to where a library keeps them, decrypting inline. */
#include "cmds.h"
#include "quire/base/util.h"

#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Every command, in the order `quire --help` and the man page list them. */
static const struct cmd_spec *const commands[] = {
    &cmd_run_spec,       &cmd_decrypt_spec,      &cmd_report_spec,
    &cmd_grin_list_spec, &cmd_grin_request_spec, &cmd_extract_spec,
    &cmd_export_spec,    &bench_decrypt_spec,    &bench_queue_spec,
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* The command argv names ("bench decrypt" takes two words); *words says how many. */
static const struct cmd_spec *find_command(int argc, char **argv, int *words)
{
        for (size_t i = 0; i < NCOMMANDS; i++) {
                const char *name = commands[i]->name, *sp = strchr(name, ' ');
                size_t first = sp ? (size_t)(sp - name) : strlen(name);
                if (strlen(argv[0]) != first || memcmp(argv[0], name, first))
                        continue;
                if (!sp) {
                        *words = 1;
                        return commands[i];
                }
                if (argc > 1 && !strcmp(argv[1], sp + 1)) {
                        *words = 2;
                        return commands[i];
                }
        }
        return NULL;
}

static bool is_prefix_of_command(const char *word)
{
        size_t n = strlen(word);
        for (size_t i = 0; i < NCOMMANDS; i++)
                if (!strncmp(commands[i]->name, word, n) && commands[i]->name[n] == ' ')
                        return true;
        return false;
}

/* quire help [COMMAND...] | quire help --json (the tables, for tools/gen-docs). */
static int help(int argc, char **argv)
{
        int words;
        if (argc > 1 && !strcmp(argv[1], "--json"))
                return opts_dump_json(commands, NCOMMANDS, stdout) ? 1 : 0;
        if (argc == 1) {
                opts_print_commands(commands, NCOMMANDS, stdout);
                return 0;
        }
        const struct cmd_spec *c = find_command(argc - 1, argv + 1, &words);
        if (!c) {
                qlog("help: no command '%s'", argv[1]);
                return 2;
        }
        opts_print_help(c, stdout);
        return 0;
}

/* Core dumps are off unless a command line asks for them: the process holds the
 * passphrase and bearer tokens. */
static bool core_dumps_allowed(int argc, char **argv)
{
        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--allow-core-dumps"))
                        return true;
        return false;
}

/* The heap keeps what it has grown to. By default glibc gives freed memory back (a thread
 * arena's top once more than 128 KiB is free, an mmapped chunk on every free) and the next
 * book faults it in again a page at a time: thousands of faults a run of small books, and
 * on a VM a fresh page can cost ~16 µs. A run's peak is bounded by its slots, so keeping
 * it costs no more memory than the run needed anyway. */
static void heap_keep(void)
{
        mallopt(M_TRIM_THRESHOLD, 64 << 20);
        mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

int main(int argc, char **argv)
{
        util_std_fds_guard();
        heap_keep();
        if (util_secrets_protect(core_dumps_allowed(argc, argv)) < 0)
                qlog("warning: cannot keep secrets out of core dumps: %s", strerror(errno));
        if (argc < 2) {
                opts_print_commands(commands, NCOMMANDS, stderr);
                return 2;
        }
        const char *cmd = argv[1];
        int words;
        const struct cmd_spec *c = find_command(argc - 1, argv + 1, &words);
        if (c)
                return c->main(argc - words, argv + words);
        if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
                printf("quire %s\n", util_version);
                return 0;
        }
        if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help"))
                return help(argc - 1, argv + 1);
        if (is_prefix_of_command(cmd))
                qlog("%s: expected a subcommand", cmd);
        else
                qlog("unknown command '%s'", cmd);
        opts_print_commands(commands, NCOMMANDS, stderr);
        return 2;
}
