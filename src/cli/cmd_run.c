/* quire run: the program's side of a run. Parses the options (the table below is also
 * the man page's and the completion's), blocks the signals before any thread exists,
 * opens the run (its locks first), the source and the destination, and hands them to the
 * engine. */
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmds.h"
#include "derived_sinks.h"
#include "options.h"
#include "quire/base/util.h"
#include "quire/engine/feeder.h"
#include "quire/engine/run.h"
#include "quire/io/grin_set.h"
#include "quire/io/auth.h"
#include "quire/engine/journal.h"
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

enum {
        RUN_SOURCE = 256,
        RUN_DEST,
        RUN_PASSFILE,
        RUN_STAGING,
        RUN_STAGING_MAX,
        RUN_MAX_BOOK,
        RUN_JOURNAL,
        RUN_FORCE,
        RUN_QUEUE,
        RUN_WORKERS,
        RUN_DOWNLOADS,
        RUN_UPLOADS,
        RUN_THREADS,
        RUN_CPUS,
        RUN_IO,
        RUN_RETRIES,
        RUN_STALL,
        RUN_MIN_RATE,
        RUN_MIN_RATE_WINDOW,
        RUN_DOWNLOAD_TIMEOUT,
        RUN_MAX_FAIL,
        RUN_STATUS_EVERY,
        RUN_STATUS_FORMAT,
        RUN_PROGRESS,
        RUN_METRICS_FILE,
        RUN_METRICS_INTERVAL,
        RUN_CA,
        RUN_HEADER_FILE,
        RUN_OAUTH,
        RUN_S3_ENDPOINT,
        RUN_PART_SIZE,
        RUN_MAX_UPLOAD_RATE,
        RUN_BATCH,
        RUN_CORE_DUMPS,
        RUN_GRIN,
        RUN_GRIN_URL,
        RUN_QUEUE_KIND,
        RUN_REQUEST_BATCH,
        RUN_DRY_RUN,
        RUN_VERSION,
        RUN_OCR_DEST,
        RUN_MARC_DEST,
        RUN_VERIFY_CONTENTS,
        RUN_REQUIRE_CHECKSUMS,
};

static const struct opt run_opts[] = {
    OPT("source", RUN_SOURCE, "TEMPLATE", NULL,
        "Where books come from: a URL or path with {barcode}, http(s)://..., file://... or "
        "/dir/.... Required.",
        .section = "Source and destination"),
    OPT("dest", RUN_DEST, "DEST", NULL,
        "Where books go: a directory (created if missing) or s3://BUCKET[/PREFIX], key "
        "PREFIX/BARCODE.tar.gz. Required.",
        .values = OPT_DIR),
    OPT("passphrase-file", RUN_PASSFILE, "FILE", NULL,
        "The passphrase is the first line of FILE (else $QUIRE_PASSPHRASE; never from argv).",
        .values = OPT_FILE),
    OPT("staging", RUN_STAGING, "DIR", "DEST/.quire-staging, or ./quire-staging for S3",
        "Where decrypted books wait for delivery.", .values = OPT_DIR),
    OPT("staging-max", RUN_STAGING_MAX, "SIZE", "no bound",
        "Bound on staged plaintext; downloads wait while it is full."),
    OPT("max-book-size", RUN_MAX_BOOK, "SIZE", "64GiB",
        "Bound on one book's plaintext: a book that would grow past it (an endless or "
        "decompression-bomb stream) fails alone."),
    OPT("journal", RUN_JOURNAL, "FILE", "quire.journal",
        "One line per finished book; books it says were delivered are skipped.",
        .values = OPT_FILE),
    OPT("force", RUN_FORCE, NULL, NULL,
        "Fetch even when the destination holds the book with the source's ETag."),
    OPT("queue-size", RUN_QUEUE, "N", "100", "Barcodes read ahead of the workers.",
        .section = "Limits"),
    OPT("workers", RUN_WORKERS, "N", "20", "Books in flight."),
    OPT("downloads", RUN_DOWNLOADS, "N", "5",
        "Concurrent source requests across all threads (GRIN's limit)."),
    OPT("uploads", RUN_UPLOADS, "N", "10", "Concurrent deliveries."),
    OPT("threads", RUN_THREADS, "N", "one per CPU", "Worker threads."),
    OPT("cpus", RUN_CPUS, "LIST", NULL, "Pin one worker thread per listed CPU, e.g. 0,2-3."),
    OPT("io", RUN_IO, "BACKEND", "auto",
        "Event backend: auto (io_uring where allowed, else epoll), uring or epoll.",
        .values = "auto uring epoll"),
    OPT("retries", RUN_RETRIES, "N", "5",
        "Retries of a transient failure (5xx, 429, reset, stall) per book.", .section = "Failures"),
    OPT("stall-timeout", RUN_STALL, "SECONDS", "60",
        "A transfer with no byte for this long is retried."),
    OPT("min-rate", RUN_MIN_RATE, "SIZE", "1KiB",
        "A download slower than SIZE bytes a second over a --min-rate-window is retried like "
        "a stall (a source that trickles never stalls); 0 turns the check off."),
    OPT("min-rate-window", RUN_MIN_RATE_WINDOW, "SECONDS", "60",
        "The window --min-rate is measured over."),
    OPT("download-timeout", RUN_DOWNLOAD_TIMEOUT, "SECONDS", "14400",
        "One download attempt taking longer is retried like a stall; 0: no deadline."),
    OPT("max-consecutive-failures", RUN_MAX_FAIL, "N", "10",
        "Stop taking books after N run-level failures in a row: wrong passphrase, "
        "authentication, destination."),
    OPT("status-every", RUN_STATUS_EVERY, "N", "20", "A status line after every N finished books.",
        .section = "Status"),
    OPT("status-format", RUN_STATUS_FORMAT, "FMT", "text", "text, or json: one object per line.",
        .values = "text json"),
    OPT("progress", RUN_PROGRESS, "MODE", "live on a terminal, else plain",
        "live: a few lines redrawn in place on the terminal (books/s and MB/s over the last "
        "minute, ETA, slots in use, the last failure; NO_COLOR honoured); plain: the status "
        "lines; none: only the summary. With --status-format json the default is plain.",
        .values = "plain live none"),
    OPT("metrics-file", RUN_METRICS_FILE, "FILE", NULL,
        "Prometheus text format (node_exporter's textfile collector), replaced atomically every "
        "--metrics-interval and at the end: books by outcome, bytes, retries by cause, books "
        "per stage, slot busy time, S2K time.",
        .values = OPT_FILE),
    OPT("metrics-interval", RUN_METRICS_INTERVAL, "SECONDS", "15",
        "How often --metrics-file is rewritten."),
    OPT("grin", RUN_GRIN, "LIBRARY", NULL,
        "Google's GRIN: the source is GRIN_URL/LIBRARY/FILE (FILE from GRIN's list, else "
        "BARCODE.tar.gz.gpg); a book GRIN has not converted is journaled conversion-failed "
        "(with GRIN's reason), in-process, or requested (its conversion is asked for now).",
        .section = "GRIN"),
    OPT("grin-url", RUN_GRIN_URL, "URL", GRIN_URL_DEFAULT, "Where GRIN is."),
    OPT("queue", RUN_QUEUE_KIND, "LIST", NULL,
        "With --grin, instead of a barcodes file: converted (the books GRIN has ready, read "
        "page by page while the run goes on) or unconverted (all books minus converted, in "
        "process and failed: their conversion is requested, nothing is downloaded).",
        .values = "converted unconverted"),
    OPT("request-batch", RUN_REQUEST_BATCH, "N", "1",
        "Barcodes per conversion request (GRIN's one known form is 1)."),
    OPT("ca-file", RUN_CA, "FILE", NULL,
        "Trust this CA bundle for HTTPS instead of the system's store.", .section = "GRIN and S3",
        .values = OPT_FILE),
    OPT("header-file", RUN_HEADER_FILE, "FILE", NULL,
        "Request headers for the source, one 'Name: value' a line, reread whenever the file "
        "changes (rotating tokens).",
        .values = OPT_FILE),
    OPT("oauth", RUN_OAUTH, "FILE", NULL,
        "OAuth2 credentials JSON (client_id, client_secret, refresh_token, token_uri): quire "
        "keeps a token fresh and never prints it.",
        .values = OPT_FILE),
    OPT("s3-endpoint", RUN_S3_ENDPOINT, "URL", "AWS",
        "S3-compatible endpoint, path-style (MinIO, R2); also $AWS_ENDPOINT_URL_S3 or "
        "$AWS_ENDPOINT_URL."),
    OPT("part-size", RUN_PART_SIZE, "SIZE", "64MiB",
        "Books above this go to S3 by multipart upload, in parts of this size (5MiB to 5GiB)."),
    OPT("max-upload-rate", RUN_MAX_UPLOAD_RATE, "SIZE", "unlimited",
        "S3: byte rate cap per upload, e.g. 10MiB (for shared links)."),
    OPT("ocr-dest", RUN_OCR_DEST, "DEST", NULL,
        "Also read inside each book as it streams, and deliver its OCR text as "
        "BARCODE_ocr.jsonl.gz (the Python pipeline's: one JSON string a page, gzip) to this "
        "directory or s3://BUCKET[/PREFIX], before the book itself.",
        .section = "Inside the book", .values = OPT_DIR),
    OPT("marc-dest", RUN_MARC_DEST, "DEST", NULL,
        "Deliver the MARC record of the book's METS file as BARCODE_marc.json (the Python "
        "pipeline's fields, null where absent) to this directory or s3://BUCKET[/PREFIX].",
        .values = OPT_DIR),
    OPT("verify-contents", RUN_VERIFY_CONTENTS, NULL, NULL,
        "Check every member of each book against its checksum.md5 (implied by --ocr-dest and "
        "--marc-dest); the verdict goes into the journal's detail (checksum=ok, or the first "
        "member that differs)."),
    OPT("require-checksums", RUN_REQUIRE_CHECKSUMS, NULL, NULL,
        "A book whose checksum.md5 verdict is not ok (a member differs, is unlisted or "
        "missing, no list, not a tar.gz) fails and is not delivered. Without it such a book is "
        "delivered (its MDC passed: it is GRIN's own object) with the verdict journaled."),
    OPT("batch", RUN_BATCH, "N", NULL, "Benchmarks only: the old design, N books at a time.",
        .section = "Other"),
    OPT("dry-run", RUN_DRY_RUN, NULL, NULL,
        "Check everything and change nothing: reads the list (and GRIN's), the journal, the "
        "passphrase; checks the source's credentials and the destination; prints how many "
        "books a run would fetch, skip and request."),
    OPT("allow-core-dumps", RUN_CORE_DUMPS, NULL, NULL,
        "Let a crash dump core. Off by default: the process holds the passphrase and tokens."),
    OPT("version", RUN_VERSION, NULL, NULL, "Print the version and exit."),
    {0},
};

const struct cmd_spec cmd_run_spec = {
    .name = "run",
    .operands = "[BARCODES_FILE|-]",
    .operand_values = OPT_FILE,
    .max_operands = 1,
    .summary = "move books: fetch, decrypt, deliver",
    .description =
        "Fetches each barcode's book from --source, decrypts it as it arrives, and delivers "
        "BARCODE.tar.gz to --dest. Barcodes: one per line, from the file or standard input; "
        "blank and '#' lines are skipped. Sizes take KiB, MiB, GiB suffixes (64MiB, 5M).",
    .opts = run_opts,
    .main = cmd_run,
};

/* "0,2-3" -> {0, 2, 3}. */
static int parse_cpus(const char *arg, struct run_config *cfg)
{
        const char *p = arg;
        cfg->ncpus = 0;
        while (*p) {
                char *end;
                long lo = strtol(p, &end, 10), hi = lo;
                if (end == p)
                        goto bad;
                p = end;
                if (*p == '-') {
                        hi = strtol(p + 1, &end, 10);
                        if (end == p + 1)
                                goto bad;
                        p = end;
                }
                if (lo < 0 || hi < lo || hi >= CPU_SETSIZE)
                        goto bad;
                for (long c = lo; c <= hi; c++)
                        if (cfg->ncpus < CPU_SETSIZE)
                                cfg->cpus[cfg->ncpus++] = (int)c;
                if (*p == ',')
                        p++;
                else if (*p)
                        goto bad;
        }
        if (cfg->ncpus)
                return 0;
bad:
        return opts_usage_error(&cmd_run_spec, RUN_CPUS, "expected a list such as 0,2-3, got '%s'",
                                arg);
}

static int set_count(int key, const char *arg, uint64_t lo, uint64_t hi, unsigned *out)
{
        uint64_t v;
        int r = opts_count(&cmd_run_spec, key, arg, lo, hi, &v);
        if (r == 0)
                *out = (unsigned)v;
        return r;
}

static int set_option(void *ctx, int key, const char *arg)
{
        struct run_opts *o = ctx;
        struct run_config *cfg = &o->run;
        const struct cmd_spec *c = &cmd_run_spec;
        unsigned idx;
        switch (key) {
        case RUN_SOURCE:
                o->source.tmpl = arg;
                return 0;
        case RUN_DEST:
                o->sink.dest = arg;
                return 0;
        case RUN_PASSFILE:
                o->passfile = arg;
                return 0;
        case RUN_STAGING:
                cfg->staging = arg;
                return 0;
        case RUN_STAGING_MAX:
                return opts_size(c, key, arg, 0, UINT64_MAX, &cfg->staging_max);
        case RUN_MAX_BOOK:
                return opts_size(c, key, arg, 1, UINT64_MAX, &cfg->max_book_size);
        case RUN_JOURNAL:
                cfg->journal_path = arg;
                return 0;
        case RUN_FORCE:
                cfg->force = true;
                return 0;
        case RUN_QUEUE:
                return set_count(key, arg, 1, 1u << 20, &cfg->queue_size);
        case RUN_WORKERS:
                return set_count(key, arg, 1, 10000, &cfg->workers);
        case RUN_DOWNLOADS:
                return set_count(key, arg, 1, 10000, &cfg->downloads);
        case RUN_UPLOADS:
                return set_count(key, arg, 1, 10000, &cfg->uploads);
        case RUN_THREADS:
                return set_count(key, arg, 1, CPU_SETSIZE, &cfg->threads);
        case RUN_CPUS:
                return parse_cpus(arg, cfg);
        case RUN_IO:
                if (opts_choice(c, key, arg, &idx))
                        return OPTS_USAGE;
                cfg->io = idx == 0 ? LOOP_AUTO : idx == 1 ? LOOP_URING : LOOP_EPOLL;
                return 0;
        case RUN_RETRIES:
                return set_count(key, arg, 0, 100, &cfg->retries);
        case RUN_STALL:
                if (set_count(key, arg, 1, 86400, &o->source.stall_timeout_s))
                        return OPTS_USAGE;
                o->sink.stall_timeout_s = o->source.stall_timeout_s;
                return 0;
        case RUN_MIN_RATE:
                return opts_size(c, key, arg, 0, UINT64_MAX, &o->source.min_rate);
        case RUN_MIN_RATE_WINDOW:
                return set_count(key, arg, 1, 86400, &o->source.min_rate_window_s);
        case RUN_DOWNLOAD_TIMEOUT:
                return set_count(key, arg, 0, 30 * 86400, &o->source.download_timeout_s);
        case RUN_MAX_FAIL:
                return set_count(key, arg, 0, UINT32_MAX, &cfg->max_consecutive_failures);
        case RUN_STATUS_EVERY:
                return set_count(key, arg, 1, UINT32_MAX, &cfg->status_every);
        case RUN_STATUS_FORMAT:
                if (opts_choice(c, key, arg, &idx))
                        return OPTS_USAGE;
                cfg->status_json = idx == 1;
                return 0;
        case RUN_PROGRESS:
                if (opts_choice(c, key, arg, &idx))
                        return OPTS_USAGE;
                cfg->progress = idx == 0   ? PROGRESS_PLAIN
                                : idx == 1 ? PROGRESS_LIVE
                                           : PROGRESS_NONE;
                return 0;
        case RUN_METRICS_FILE:
                cfg->metrics_path = arg;
                return 0;
        case RUN_METRICS_INTERVAL:
                return set_count(key, arg, 1, 86400, &cfg->metrics_interval_s);
        case RUN_CA:
                o->source.ca_file = o->sink.ca_file = arg;
                return 0;
        case RUN_HEADER_FILE:
                o->source.header_file = arg;
                return 0;
        case RUN_OAUTH:
                o->source.oauth_file = arg;
                return 0;
        case RUN_S3_ENDPOINT:
                o->sink.s3_endpoint = arg;
                return 0;
        case RUN_PART_SIZE:
                /* S3's own bounds: parts of 5 MiB to 5 GiB. */
                return opts_size(c, key, arg, 5u << 20, 5ull << 30, &o->sink.part_size);
        case RUN_MAX_UPLOAD_RATE:
                return opts_size(c, key, arg, 0, UINT64_MAX, &o->sink.max_upload_rate);
        case RUN_BATCH:
                return set_count(key, arg, 1, 1u << 20, &cfg->batch);
        case RUN_VERSION:
                o->version = true;
                return 0;
        case RUN_CORE_DUMPS: /* main() looked for it before anything else */
                return 0;
        case RUN_GRIN:
                if (feeder_barcode_invalid(arg, strlen(arg)))
                        return opts_usage_error(c, key, "'%s' is not a library name", arg);
                o->grin.site.library = arg;
                return 0;
        case RUN_GRIN_URL:
                o->grin.site.url = arg;
                return 0;
        case RUN_QUEUE_KIND:
                if (opts_choice(c, key, arg, &idx))
                        return OPTS_USAGE;
                o->grin.queue = idx == 0 ? RUN_GRIN_QUEUE_CONVERTED : RUN_GRIN_QUEUE_UNCONVERTED;
                return 0;
        case RUN_DRY_RUN:
                o->dry_run = true;
                return 0;
        case RUN_REQUEST_BATCH:
                return set_count(key, arg, 1, 1000, &o->grin.request_batch);
        case RUN_OCR_DEST:
                o->derived.ocr_dest = arg;
                return 0;
        case RUN_MARC_DEST:
                o->derived.marc_dest = arg;
                return 0;
        case RUN_VERIFY_CONTENTS:
                o->derived.cfg.verify = true;
                return 0;
        case RUN_REQUIRE_CHECKSUMS:
                o->derived.cfg.require_checksums = true;
                return 0;
        default:
                return opts_usage_error(c, 0, "unknown option");
        }
}

static void opts_defaults(struct run_opts *o)
{
        *o = (struct run_opts){0};
        run_config_defaults(&o->run);
        o->run.max_book_size = 64ull << 30;
        o->source.stall_timeout_s = o->sink.stall_timeout_s = 60;
        o->source.min_rate = 1024;
        o->source.min_rate_window_s = 60;
        o->source.download_timeout_s = 4 * 3600;
        o->grin.pipe_w = -1;
}

/* Parses argv into o. Returns 0 to run, 1 when --help/--version was answered, -1 on a
 * usage error (already reported). */
static int parse_args(int argc, char **argv, struct run_opts *o)
{
        const struct cmd_spec *c = &cmd_run_spec;
        opts_defaults(o);
        int next = opts_parse(c, argc, argv, set_option, o);
        if (next == OPTS_HELP)
                return 1;
        if (next < 0)
                return -1;
        if (o->version) {
                printf("quire %s\n", util_version);
                return 1;
        }
        if (next < argc)
                o->run.barcodes_path = argv[next];
        /* opts_usage_error() prints the line and always returns OPTS_USAGE. */
        bool unconverted = o->grin.queue == RUN_GRIN_QUEUE_UNCONVERTED;
        if (o->grin.queue && !o->grin.site.library)
                return opts_usage_error(c, RUN_QUEUE_KIND, "needs --grin LIBRARY"), -1;
        if (o->grin.queue && next < argc)
                return opts_usage_error(c, RUN_QUEUE_KIND, "takes no barcodes file"), -1;
        if (!o->source.tmpl && !o->grin.site.library)
                return opts_usage_error(c, RUN_SOURCE,
                                        "is required (a URL or path with {barcode}), or --grin"),
                       -1;
        if (o->source.tmpl && !strstr(o->source.tmpl, "{barcode}") &&
            !strstr(o->source.tmpl, "{file}"))
                return opts_usage_error(c, RUN_SOURCE, "'%s' has no {barcode}", o->source.tmpl), -1;
        if (!o->sink.dest && !unconverted)
                return opts_usage_error(c, RUN_DEST,
                                        "is required (a directory or s3://BUCKET[/PREFIX])"),
                       -1;
        if (unconverted)
                return 0; /* nothing is decrypted: no passphrase needed */
        o->passphrase = util_read_passphrase(o->passfile, &o->run.passlen);
        if (!o->passphrase)
                return -1;
        o->run.passphrase = o->passphrase;
        return 0;
}

/* ---- the run ----------------------------------------------------------------------- */

/* Default staging: inside a destination directory (so delivery is a rename), or
 * ./quire-staging beside the default journal for S3. */
static void default_staging(struct run_opts *o, char *buf, size_t len)
{
        if (o->run.staging)
                return;
        if (strncmp(o->sink.dest, "s3://", 5))
                snprintf(buf, len, "%s/.quire-staging", o->sink.dest);
        else
                snprintf(buf, len, "quire-staging");
        o->run.staging = buf;
}

/* A directory destination must exist before its staging directory can be made in it. */
static int dest_dir_prepare(const char *dest)
{
        return strncmp(dest, "s3://", 5) ? util_mkdirs(dest, true) : 0;
}

/* ---- --dry-run ------------------------------------------------------------------------ */

struct dry_counts {
        struct journal *journal;
        struct grin_catalog *catalog;
        struct grin_set *seen; /* the list's barcodes, for its repeats */
        uint64_t listed, fetch, skip, repeats, invalid, failed, in_process;
};

static void dry_count(struct dry_counts *d, const char *barcode)
{
        d->listed++;
        if (grin_set_add(d->seen, barcode, strlen(barcode)) == 0)
                d->repeats++;
        else if (journal_delivered(d->journal, barcode))
                d->skip++;
        else if (d->catalog && grin_catalog_known(d->catalog, barcode) == GRIN_KNOWN_FAILED)
                d->failed++;
        else if (d->catalog && grin_catalog_known(d->catalog, barcode) == GRIN_KNOWN_IN_PROCESS)
                d->in_process++;
        else
                d->fetch++;
}

static int dry_row(void *ud, const struct grin_row *row)
{
        if (run_interrupted())
                return -EINTR;
        dry_count(ud, row->barcode);
        return 0;
}

static int dry_columns(void *ud, unsigned n, const char *const *names)
{
        return 0;
}

/* The barcodes list, read to its end (a FIFO or a pipe waits for its writer). */
static int dry_list(struct dry_counts *d, const char *path, char *msg, size_t msglen)
{
        struct feeder *f;
        int err = feeder_open(&f, path);
        if (err) {
                snprintf(msg, msglen, "%s: %s", path, strerror(-err));
                return err;
        }
        char bc[BARCODE_MAX + 1];
        uint64_t line;
        const char *why;
        enum feeder_result fr;
        while (!err && (fr = feeder_next(f, bc, &line, &why)) != FEED_EOF) {
                if (fr == FEED_BARCODE) {
                        dry_count(d, bc);
                } else if (fr == FEED_INVALID) {
                        d->invalid++;
                } else if (run_interrupted()) {
                        err = -EINTR;
                } else {
                        struct pollfd pfd = {.fd = feeder_fd(f), .events = POLLIN};
                        err = feeder_regular(f) || poll(&pfd, 1, 200) > 0 ? feeder_fill(f) : 0;
                        if (err == -EAGAIN)
                                err = 0;
                        else if (err)
                                snprintf(msg, msglen, "%s: read: %s", path, strerror(-err));
                }
        }
        feeder_close(f);
        return err;
}

/* Everything a run would check, and the counts of what it would do; nothing written. */
static int dry_run(struct run_opts *o)
{
        char msg[1024] = "";
        struct dry_counts d = {.seen = grin_set_new(UINT32_MAX)};
        struct source *src = NULL;
        struct sink *sink = NULL;
        struct auth *auth = NULL;
        int err = d.seen ? 0 : -ENOMEM;
        if (!err && o->grin.site.library) {
                o->grin.site.ca_file = o->source.ca_file;
                if ((o->source.header_file || o->source.oauth_file) &&
                    auth_open(&auth, o->source.header_file, o->source.oauth_file, o->source.ca_file,
                              msg, sizeof msg) < 0)
                        err = -EACCES;
                o->grin.site.auth = auth;
                o->source.auth = auth;
                if (!err && !o->source.tmpl)
                        err = grin_url(&o->grin.site, "{file}", o->grin.tmpl);
                if (!o->source.tmpl)
                        o->source.tmpl = o->grin.tmpl;
                if (!err)
                        err =
                            grin_catalog_open(&d.catalog, &o->grin.site, 1, true, msg, sizeof msg);
        }
        if (!err)
                err = source_open(&src, &o->source, msg, sizeof msg);
        o->sink.check_only = true;
        if (!err && o->sink.dest)
                err = sink_open(&sink, &o->sink, msg, sizeof msg);
        if (!err)
                err =
                    derived_sinks_open(&o->derived, &o->sink, sink, o->sink.dest, msg, sizeof msg);
        if (!err && (err = journal_open_readonly(&d.journal, o->run.journal_path)) < 0)
                snprintf(msg, sizeof msg, "--journal %s: %s", o->run.journal_path, strerror(-err));
        if (!err && o->grin.queue == RUN_GRIN_QUEUE_UNCONVERTED) {
                struct grin_sink gs = {dry_columns, dry_row, &d};
                err = grin_unconverted_fetch(&o->grin.site, &gs, msg, sizeof msg);
        } else if (!err && o->grin.queue == RUN_GRIN_QUEUE_CONVERTED) {
                struct grin_sink gs = {dry_columns, dry_row, &d};
                err = grin_list_fetch(&o->grin.site, GRIN_LIST_CONVERTED, &gs, msg, sizeof msg);
        } else if (!err) {
                err = dry_list(&d, o->run.barcodes_path, msg, sizeof msg);
        }
        if (err && err != -EINTR)
                qlog("%s", msg[0] ? msg : strerror(-err));
        if (!err && o->grin.queue == RUN_GRIN_QUEUE_UNCONVERTED)
                qlog("dry run: %llu books GRIN has not converted: a run would request %llu "
                     "conversions (%llu journaled already)",
                     (unsigned long long)d.listed, (unsigned long long)d.fetch,
                     (unsigned long long)d.skip);
        else if (!err)
                qlog("dry run: %llu books listed: %llu would be fetched, %llu skipped (delivered, "
                     "per the journal), %llu repeated, %llu invalid lines",
                     (unsigned long long)d.listed, (unsigned long long)d.fetch,
                     (unsigned long long)d.skip, (unsigned long long)d.repeats,
                     (unsigned long long)d.invalid);
        if (!err)
                qlog("dry run: the passphrase, the source's credentials and the destination check "
                     "out; nothing was changed");
        if (!err && d.catalog)
                qlog("dry run: GRIN: %llu of them failed to convert, %llu in process (not "
                     "fetched); the rest not converted yet would get a conversion request",
                     (unsigned long long)d.failed, (unsigned long long)d.in_process);
        if (d.journal)
                journal_close(d.journal);
        grin_catalog_close(d.catalog);
        grin_set_free(d.seen);
        derived_sinks_close(&o->derived);
        if (sink)
                sink->ops->close(sink);
        if (src)
                src->ops->close(src);
        auth_close(auth);
        return err == -EINTR ? RUN_EXIT_SIGNAL : err ? RUN_EXIT_USAGE : RUN_EXIT_OK;
}

int cmd_run(int argc, char **argv)
{
        static struct run_opts opts; /* large (the cpu list) */
        struct run_opts *o = &opts;
        /* Before any thread exists (libcurl's resolver, the token refresher, the workers):
         * they all inherit the mask, and the signals reach only the run's signalfd. */
        run_signals_block();
        int pa = parse_args(argc, argv, o);
        if (pa)
                return pa > 0 ? 0 : RUN_EXIT_USAGE;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (o->grin.queue == RUN_GRIN_QUEUE_UNCONVERTED || o->dry_run) {
                int status = o->dry_run ? dry_run(o)
                                        : run_grin_request_unconverted(&o->grin, &o->source,
                                                                       o->run.journal_path, false);
                util_free_secret(o->passphrase);
                curl_global_cleanup();
                return status;
        }
        o->sink.interrupted = run_interrupted;
        char staging[4096], msg[1024];
        default_staging(o, staging, sizeof staging);
        struct run *r = NULL;
        struct source *src = NULL;
        struct sink *sink = NULL;
        int status = RUN_EXIT_USAGE;
        int err = dest_dir_prepare(o->sink.dest);
        if (err)
                snprintf(msg, sizeof msg, "--dest %s: %s", o->sink.dest, strerror(-err));
        if (!err && o->grin.site.library)
                err = run_grin_open(&o->grin, &o->source, &o->run, msg, sizeof msg);
        /* The run's locks first: the sink sweeps what a killed run left only under them. */
        if (!err)
                err = run_new(&r, &o->run, msg, sizeof msg);
        if (!err && run_grin_start(&o->grin) < 0) {
                snprintf(msg, sizeof msg, "cannot start reading GRIN's list");
                err = -EAGAIN;
        }
        if (!err)
                err = source_open(&src, &o->source, msg, sizeof msg);
        if (!err)
                err = sink_open(&sink, &o->sink, msg, sizeof msg);
        if (!err && derived_sinks_wanted(&o->derived)) {
                err =
                    derived_sinks_open(&o->derived, &o->sink, sink, o->sink.dest, msg, sizeof msg);
                if (!err)
                        derived_attach(r, &o->derived.cfg);
        }
        if (err)
                qlog("%s", msg);
        else
                status = run_execute(r, src, sink);
        if (err == -EINTR)
                status = RUN_EXIT_SIGNAL;
        run_free(r); /* also the reading end of GRIN's list: its producer stops */
        run_grin_close(&o->grin);
        if (atomic_load(&o->grin.list_failed) && status == RUN_EXIT_OK)
                status = RUN_EXIT_FAILED;
        derived_sinks_close(&o->derived);
        if (sink)
                sink->ops->close(sink);
        if (src)
                src->ops->close(src);
        util_free_secret(o->passphrase);
        curl_global_cleanup();
        return status;
}
