/* quire grin list|request: GRIN's lists to stdout, conversion requests by hand. */
#include "cmds.h"
#include "quire/base/util.h"
#include "quire/engine/feeder.h"
#include "quire/io/auth.h"
#include "quire/io/grin.h"
#include "quire/io/grin_request.h"

#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
        GRIN_OPT_LIBRARY = 256,
        GRIN_OPT_URL,
        GRIN_OPT_OAUTH,
        GRIN_OPT_HEADER_FILE,
        GRIN_OPT_CA_FILE,
        GRIN_OPT_FORMAT,
        GRIN_OPT_BATCH,
        GRIN_OPT_QUEUE_MAX,
};

#define SITE_OPTS                                                                                  \
        OPT("grin", GRIN_OPT_LIBRARY, "LIBRARY", NULL,                                             \
            "The library's directory name at GRIN (e.g. NYPL); required."),                        \
            OPT("grin-url", GRIN_OPT_URL, "URL", GRIN_URL_DEFAULT,                                 \
                "GRIN's base URL; the library is GRIN_URL/LIBRARY/."),                             \
            OPT("oauth", GRIN_OPT_OAUTH, "FILE", NULL,                                             \
                "OAuth2 credentials JSON (client_id, client_secret, refresh_token, token_uri): "   \
                "a 302 to ServiceLogin or a 401 refreshes the token once; it is never printed.",   \
                .section = "Credentials", .values = OPT_FILE),                                     \
            OPT("header-file", GRIN_OPT_HEADER_FILE, "FILE", NULL,                                 \
                "Request headers, one 'Name: value' a line, reread whenever the file changes.",    \
                .values = OPT_FILE),                                                               \
            OPT("ca-file", GRIN_OPT_CA_FILE, "FILE", NULL, "Also trust this CA for HTTPS.",        \
                .values = OPT_FILE)

static const struct opt list_opts[] = {
    SITE_OPTS,
    OPT("format", GRIN_OPT_FORMAT, "FMT", "tsv",
        "tsv: a header line (barcode, then GRIN's columns as GRIN spells them) and a line a "
        "row; jsonl: one JSON object a row; feed: BARCODE<TAB>FILE lines without a header, the "
        "file name GRIN gave or BARCODE.tar.gz.gpg.",
        .section = "Output", .values = "tsv jsonl feed"),
    {0},
};

static const struct opt request_opts[] = {
    SITE_OPTS,
    OPT("request-batch", GRIN_OPT_BATCH, "N", "1",
        "Barcodes a _process request (1 to 1000); 1 is the one form known to work.",
        .section = "GRIN's limits"),
    OPT("queue-max", GRIN_OPT_QUEUE_MAX, "N", "50000",
        "Books GRIN's conversion queue holds: never more are requested than this minus the "
        "lines of _in_process."),
    {0},
};

const struct cmd_spec cmd_grin_list_spec = {
    .name = "grin list",
    .operands = "converted|all|in-process|failed|unconverted",
    .operand_values = "converted all in-process failed unconverted",
    .min_operands = 1,
    .max_operands = 1,
    .summary = "stream one of GRIN's lists to stdout, every page",
    .description =
        "Reads a GRIN list page by page, following every Next link, parsing each page as it "
        "arrives (bounded memory whatever the list's length), and writes its rows to stdout. "
        "converted: books ready to download (_converted; a row's barcode is its file name "
        "without .tar.gz.gpg, so a prefixed library gives NLI_X); all: every book "
        "(_all_books); in-process: conversions requested and not finished; failed: "
        "conversions that failed, with GRIN's reasons; unconverted: all books minus "
        "converted, in process and failed (the three go into a set of 64-bit hashes first, "
        "then _all_books streams through it; a prefix such as NLI_ is ignored in the "
        "comparison). A page saying \"Your request is unavailable\" ends the list, with a "
        "line on stderr. Exit 0 when the list was read to its end, 1 when it broke off "
        "(network, HTTP status), 2 for usage, credentials or access (a login page, a 403).",
    .opts = list_opts,
    .main = cmd_grin_list,
};

const struct cmd_spec cmd_grin_request_spec = {
    .name = "grin request",
    .operands = "BARCODE...|-",
    .min_operands = 1,
    .max_operands = 1 << 20,
    .summary = "ask GRIN to convert books",
    .description =
        "Requests the conversion of the barcodes given (or read from stdin, one a line, with "
        "-) and prints one line per barcode on stdout: BARCODE<TAB>OUTCOME[<TAB>GRIN's text], "
        "the outcome one of requested, already converted, already in process, refused, not "
        "requested (GRIN's queue is full or has no room: not a failure) and failed. At most 2 "
        "requests are in flight; never more books than the room left in GRIN's queue "
        "(--queue-max minus the lines of _in_process, counted at start); a 429 stops "
        "requesting for the rest of the run. A summary line goes to stderr. Exit 0 when no "
        "barcode was refused, failed or invalid, else 1; 2 for usage or credentials.",
    .opts = request_opts,
    .main = cmd_grin_request,
};

struct opts {
        const struct cmd_spec *spec;
        struct grin_site site;
        const char *oauth, *header_file;
        unsigned format; /* 0 tsv, 1 jsonl, 2 feed */
        uint64_t batch, queue_max;
};

static int set_option(void *ctx, int key, const char *arg)
{
        struct opts *o = ctx;
        switch (key) {
        case GRIN_OPT_LIBRARY:
                if (!*arg || strchr(arg, '/'))
                        return opts_usage_error(o->spec, key, "'%s' is no GRIN library name", arg);
                o->site.library = arg;
                return 0;
        case GRIN_OPT_URL:
                o->site.url = arg;
                return 0;
        case GRIN_OPT_OAUTH:
                o->oauth = arg;
                return 0;
        case GRIN_OPT_HEADER_FILE:
                o->header_file = arg;
                return 0;
        case GRIN_OPT_CA_FILE:
                o->site.ca_file = arg;
                return opts_readable_file(o->spec, key, arg);
        case GRIN_OPT_FORMAT:
                return opts_choice(o->spec, key, arg, &o->format);
        case GRIN_OPT_BATCH:
                return opts_count(o->spec, key, arg, 1, 1000, &o->batch);
        case GRIN_OPT_QUEUE_MAX:
                return opts_count(o->spec, key, arg, 1, 100000000, &o->queue_max);
        }
        return 0;
}

/* Returns the index of the first operand, or an exit status + 1000 (usage, --help). */
static int parse(const struct cmd_spec *spec, int argc, char **argv, struct opts *o)
{
        o->spec = spec;
        int next = opts_parse(spec, argc, argv, set_option, o);
        if (next < 0)
                return 1000 + opts_exit_status(next);
        if (!o->site.library) {
                opts_usage_error(spec, 0, "--grin LIBRARY is required");
                return 1002;
        }
        return next;
}

/* ---- tokens ---------------------------------------------------------------------- */

/* auth_open starts the token refresher of its own (io/auth.h). */
static int credentials(struct opts *o)
{
        char msg[1024];
        if (!o->oauth && !o->header_file)
                return 0;
        if (auth_open(&o->site.auth, o->header_file, o->oauth, o->site.ca_file, msg, sizeof msg) <
            0) {
                qlog("%s", msg);
                auth_close(o->site.auth);
                o->site.auth = NULL;
                return -1;
        }
        return 0;
}

static void credentials_end(struct opts *o)
{
        auth_close(o->site.auth);
        o->site.auth = NULL;
}

/* ---- list ------------------------------------------------------------------------ */

struct out {
        bool jsonl;
        char line[256 * 1024];
};

static int out_columns(void *ud, unsigned n, const char *const *names)
{
        struct out *o = ud;
        if (o->jsonl)
                return 0;
        fputs("barcode", stdout);
        for (unsigned i = 0; i < n; i++)
                printf("\t%s", names[i]);
        putchar('\n');
        return ferror(stdout) ? -EIO : 0;
}

/* A JSON string of s; bytes that are not UTF-8 become U+FFFD. */
static json_t *json_text(const char *s)
{
        json_t *j = json_string(s);
        if (j)
                return j;
        size_t n = strlen(s);
        char *fixed = malloc(3 * n + 1), *p = fixed;
        if (!fixed)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if ((unsigned char)s[i] < 0x80) {
                        *p++ = s[i];
                } else {
                        memcpy(p, "\xef\xbf\xbd", 3);
                        p += 3;
                }
        }
        *p = 0;
        j = json_string(fixed);
        free(fixed);
        return j;
}

static int out_row(void *ud, const struct grin_row *r)
{
        struct out *o = ud;
        if (!o->jsonl) {
                fputs(r->barcode, stdout);
                for (unsigned i = 0; i < r->ncols; i++) {
                        putchar('\t');
                        fputs(r->values[i], stdout);
                }
                putchar('\n');
                return ferror(stdout) ? -EIO : 0;
        }
        json_t *obj = json_object();
        int err = !obj || json_object_set_new(obj, "barcode", json_string(r->barcode));
        for (unsigned i = 0; i < r->ncols && !err; i++)
                err = json_object_set_new(obj, r->names[i], json_text(r->values[i]));
        size_t n = err ? 0 : json_dumpb(obj, o->line, sizeof o->line - 1, JSON_COMPACT);
        json_decref(obj);
        if (!n || n >= sizeof o->line - 1)
                return -ENOMEM;
        o->line[n++] = '\n';
        return fwrite(o->line, 1, n, stdout) == n ? 0 : -EIO;
}

static int grin_list(struct opts *o, const char *kind_name)
{
        enum grin_list_kind kind = GRIN_LIST_ALL;
        bool unconverted = !strcmp(kind_name, "unconverted");
        if (!unconverted && grin_list_kind_parse(kind_name, &kind) < 0) {
                opts_usage_error(&cmd_grin_list_spec, 0,
                                 "'%s' is not converted, all, in-process, failed or unconverted",
                                 kind_name);
                return 2;
        }
        if (credentials(o) < 0)
                return 2;
        static char obuf[1 << 20];
        setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
        struct out *out = malloc(sizeof *out);
        char msg[GRIN_URL_MAX + 512] = "";
        int ret = -ENOMEM;
        if (out && o->format == 2) {
                ret = grin_list_to_fd(&o->site, unconverted ? -1 : (int)kind, 1, msg, sizeof msg);
        } else if (out) {
                out->jsonl = o->format == 1;
                struct grin_sink sink = {out_columns, out_row, out};
                ret = unconverted ? grin_unconverted_fetch(&o->site, &sink, msg, sizeof msg)
                                  : grin_list_fetch(&o->site, kind, &sink, msg, sizeof msg);
        }
        if (fflush(stdout) && !ret)
                ret = -EIO;
        if (ret)
                qlog("grin list %s: %s", kind_name,
                     msg[0]        ? msg
                     : ret == -EIO ? "writing stdout failed"
                                   : strerror(-ret));
        free(out);
        credentials_end(o);
        return !ret ? 0 : ret == -EACCES ? 2 : 1;
}

/* ---- request --------------------------------------------------------------------- */

struct tally {
        atomic_uint_fast64_t n[GRIN_REQUEST_FAILED + 1];
};

static void print_outcome(void *ud, const char *barcode, enum grin_outcome o, const char *detail)
{
        struct tally *t = ud;
        atomic_fetch_add(&t->n[o], 1);
        flockfile(stdout);
        printf("%s\t%s%s%s\n", barcode, grin_outcome_name(o), detail[0] ? "\t" : "", detail);
        fflush(stdout);
        funlockfile(stdout);
}

/* Barcodes from the operands, or from stdin for "-"; returns how many were invalid. */
static unsigned submit_all(struct grin_req *r, int argc, char **argv)
{
        unsigned invalid = 0;
        if (argc == 1 && !strcmp(argv[0], "-")) {
                struct feeder *f;
                if (feeder_open(&f, "-") < 0) {
                        qlog("stdin: %s", strerror(errno));
                        return 1;
                }
                char b[BARCODE_MAX + 1];
                uint64_t line;
                const char *why;
                enum feeder_result fr;
                while ((fr = feeder_next(f, b, &line, &why)) != FEED_EOF) {
                        if (fr == FEED_AGAIN) {
                                /* A command of its own: waiting on stdin is what it does. */
                                struct pollfd pfd = {.fd = feeder_fd(f), .events = POLLIN};
                                int err = poll(&pfd, 1, -1) < 0 ? -errno : feeder_fill(f);
                                if (err < 0 && err != -EAGAIN && err != -EINTR) {
                                        qlog("stdin: %s", strerror(-err));
                                        invalid++;
                                        break;
                                }
                                continue;
                        }
                        if (fr == FEED_INVALID) {
                                qlog("stdin:%llu: not a barcode: %s", (unsigned long long)line,
                                     why);
                                invalid++;
                                continue;
                        }
                        grin_req_submit(r, b, true);
                }
                feeder_close(f);
                return invalid;
        }
        for (int i = 0; i < argc; i++) {
                const char *why = feeder_barcode_invalid(argv[i], strlen(argv[i]));
                if (why) {
                        qlog("'%s' is not a barcode: %s", argv[i], why);
                        invalid++;
                        continue;
                }
                grin_req_submit(r, argv[i], true);
        }
        return invalid;
}

static int grin_request(struct opts *o, int argc, char **argv)
{
        if (credentials(o) < 0)
                return 2;
        static struct tally tally;
        struct grin_req_config c = {
            .batch = o->batch, .queue_max = o->queue_max, .fn = print_outcome, .ud = &tally};
        struct grin_req *r;
        char msg[GRIN_URL_MAX + 512] = "";
        int err = grin_req_open(&r, &o->site, &c, msg, sizeof msg);
        if (err) {
                qlog("grin request: counting GRIN's queue (_in_process): %s", msg);
                credentials_end(o);
                return err == -EACCES ? 2 : 1;
        }
        unsigned invalid = submit_all(r, argc, argv);
        struct grin_req_stats st;
        grin_req_stats(r, &st);
        uint64_t in_process = st.in_process_at_open;
        grin_req_close(r);
        credentials_end(o);
        uint64_t n[GRIN_REQUEST_FAILED + 1];
        for (int i = 0; i <= GRIN_REQUEST_FAILED; i++)
                n[i] = atomic_load(&tally.n[i]);
        qlog("requested %llu, already converted %llu, already in process %llu, refused %llu, "
             "not requested %llu, failed %llu, invalid %u (GRIN had %llu in process)",
             (unsigned long long)n[GRIN_REQUESTED], (unsigned long long)n[GRIN_ALREADY_CONVERTED],
             (unsigned long long)n[GRIN_ALREADY_IN_PROCESS], (unsigned long long)n[GRIN_REFUSED],
             (unsigned long long)n[GRIN_NOT_SENT], (unsigned long long)n[GRIN_REQUEST_FAILED],
             invalid, (unsigned long long)in_process);
        return n[GRIN_REFUSED] || n[GRIN_REQUEST_FAILED] || invalid ? 1 : 0;
}

int cmd_grin_list(int argc, char **argv)
{
        struct opts o = {0};
        int next = parse(&cmd_grin_list_spec, argc, argv, &o);
        return next >= 1000 ? next - 1000 : grin_list(&o, argv[next]);
}

int cmd_grin_request(int argc, char **argv)
{
        struct opts o = {0};
        int next = parse(&cmd_grin_request_spec, argc, argv, &o);
        return next >= 1000 ? next - 1000 : grin_request(&o, argc - next, argv + next);
}
