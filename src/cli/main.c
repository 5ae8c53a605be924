/* quire: moves encrypted book archives to where a library keeps them, decrypting inline. */
#include "cmds.h"
#include "quire/base/util.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: quire run [OPTIONS] [BARCODES_FILE|-]   move books: fetch, decrypt, deliver\n"
    "       quire decrypt [--passphrase-file FILE] [-o OUT] [IN|-]\n"
    "       quire bench decrypt|queue [OPTIONS]     in-process throughput benchmarks\n"
    "       quire --version\n"
    "'quire COMMAND --help' describes each command's options.\n";

int main(int argc, char **argv)
{
        if (argc < 2) {
                fputs(usage, stderr);
                return 2;
        }
        const char *cmd = argv[1];
        if (!strcmp(cmd, "run"))
                return cmd_run(argc - 1, argv + 1);
        if (!strcmp(cmd, "decrypt"))
                return cmd_decrypt(argc - 1, argv + 1);
        if (!strcmp(cmd, "bench"))
                return cmd_bench(argc - 1, argv + 1);
        if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
                printf("quire %s\n", QUIRE_VERSION);
                return 0;
        }
        if (!strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
                fputs(usage, stdout);
                return 0;
        }
        fprintf(stderr, "quire: unknown command '%s'\n%s", cmd, usage);
        return 2;
}
