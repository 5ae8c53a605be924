/* quire bench: in-process throughput benchmarks (not tests: nothing here asserts a time). */
#include "cmds.h"

#include <stdio.h>
#include <string.h>

int bench_decrypt(int argc, char **argv);
int bench_queue(int argc, char **argv);

int cmd_bench(int argc, char **argv)
{
        if (argc >= 2 && !strcmp(argv[1], "decrypt"))
                return bench_decrypt(argc - 1, argv + 1);
        if (argc >= 2 && !strcmp(argv[1], "queue"))
                return bench_queue(argc - 1, argv + 1);
        fputs("usage: quire bench decrypt|queue [OPTIONS]\n", stderr);
        return 2;
}
