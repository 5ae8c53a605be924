/* quire run's options: the table (also the man page's and the completion's, through
 * `quire help --json`), the setter storing each value into struct run_opts, the defaults,
 * and the checks between options once all are read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_run.h"
#include "cmds.h"
#include "options.h"
#include "quire/base/util.h"
#include "quire/engine/feeder.h"

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
        "Retries of a transient failure (5xx, 429, reset, stall) per book; a transfer cut "
        "after moving the book on by 1 MiB or more resumes without spending one.",
        .section = "Failures"),
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
                return opts_readable_file(&cmd_run_spec, key, arg);
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

int cmd_run_parse_args(int argc, char **argv, struct run_opts *o)
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
