/* quire report JOURNAL: what a run (or all the runs on one journal) did, from its journal. */
#include "cmds.h"
#include "report.h"

#include "quire/base/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { REP_FORMAT = 256, REP_TOP, REP_PAUSE };

static const struct opt report_opts[] = {
    OPT("format", REP_FORMAT, "FMT", "text", "text for people, or json: one object (jq it).",
        .values = "text json"),
    OPT("top", REP_TOP, "N", "10",
        "How many of the slowest books to list (from the journal's optional 7th column, seconds; "
        "at most 1000)."),
    OPT("pause", REP_PAUSE, "SECONDS", "600",
        "A pause between two journal lines longer than this (quire was not running) is left out "
        "of the time books/hour is computed over."),
    {0},
};

const struct cmd_spec cmd_report_spec = {
    .name = "report",
    .operands = "JOURNAL|-",
    .operand_values = OPT_FILE,
    .min_operands = 1,
    .max_operands = 1,
    .summary = "summarise a journal: outcomes, failures by reason, rates",
    .description =
        "Reads a journal that quire run wrote (every run that shared it) as a stream and "
        "prints: the lines by outcome, bytes delivered, the time the lines span and books per "
        "hour over it, failures grouped by reason with a count and two example barcodes "
        "each, and the slowest books when the journal records durations. Reasons that differ "
        "only in numbers, hex digests, the barcode itself or a final \"(after N retries)\" "
        "are one group (numbers become N; an HTTP status stays). Counts are of lines: a book "
        "tried in two runs counts in both.",
    .opts = report_opts,
    .main = cmd_report,
};

struct report_args {
        const char *path;
        unsigned json;
        uint64_t top, pause_s;
};

static int set_option(void *ctx, int key, const char *arg)
{
        const struct cmd_spec *c = &cmd_report_spec;
        struct report_args *a = ctx;
        switch (key) {
        case REP_FORMAT:
                return opts_choice(c, key, arg, &a->json);
        case REP_TOP:
                return opts_count(c, key, arg, 0, REPORT_MAX_TOP, &a->top);
        case REP_PAUSE:
                return opts_count(c, key, arg, 1, 365 * 86400, &a->pause_s);
        }
        return 0;
}

int cmd_report(int argc, char **argv)
{
        struct report_args a = {.top = 10, .pause_s = 600};
        int next = opts_parse(&cmd_report_spec, argc, argv, set_option, &a);
        if (next < 0)
                return opts_exit_status(next);
        a.path = argv[next];
        bool std_in = !strcmp(a.path, "-");
        const char *name = std_in ? "stdin" : a.path;
        int fd = std_in ? STDIN_FILENO : open(a.path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                qlog("report: %s: %s", name, strerror(errno));
                return 1;
        }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        struct report *r = NULL;
        int rc = report_new(&r, (unsigned)a.top, (double)a.pause_s);
        if (!rc)
                rc = report_read_fd(r, fd);
        if (rc)
                qlog("report: %s: %s", name, strerror(-rc));
        else if (a.json)
                rc = report_print_json(r, name, stdout);
        else
                report_print_text(r, name, stdout);
        if (!rc && fflush(stdout))
                rc = -errno;
        report_free(r);
        if (!std_in)
                close(fd);
        return rc ? 1 : 0;
}
