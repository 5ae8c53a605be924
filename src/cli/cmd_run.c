/* quire run: the main thread. Parses options, blocks the signals every thread must leave
 * to the signalfd, starts the workers, feeds barcodes into the queue as a stream, prints
 * status lines, and drains (first signal) or aborts (second). */
#include "cmds.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quire/base/util.h"
#include "quire/engine/run.h"
#include "quire/io/sinks.h"
#include "quire/io/sources.h"

/* Everything quire run was told, sorted by who takes it. */
struct run_opts {
        struct run_config run;
        struct source_config source;
        struct sink_config sink;
        const char *passfile;
        char *passphrase;
};

static const char run_usage[] =
    "usage: quire run [OPTIONS] [BARCODES_FILE|-]\n"
    "Fetches each barcode's book from --source, decrypts it as it arrives, and delivers\n"
    "BARCODE.tar.gz to --dest. Barcodes: one per line; blank and '#' lines skipped.\n"
    "\n"
    "  --source TEMPLATE        URL or path with {barcode}: http(s)://..., file://..., /dir/...\n"
    "  --dest DIR               where books go (created if missing)\n"
    "  --passphrase-file FILE   first line is the passphrase (else $QUIRE_PASSPHRASE)\n"
    "  --staging DIR            decrypted books before delivery (default DEST/.quire-staging,\n"
    "                           or ./quire-staging for S3)\n"
    "  --journal FILE           one line per finished book; books it says were delivered\n"
    "                           are skipped (default quire.journal)\n"
    "  --queue-size N           barcodes read ahead (100)\n"
    "  --workers N              books in flight (20)\n"
    "  --downloads N            concurrent source requests across all threads (5)\n"
    "  --uploads N              concurrent deliveries (10)\n"
    "  --threads N              worker threads (default: one per CPU)\n"
    "  --cpus LIST              pin one worker thread per listed CPU, e.g. 0,2-3\n"
    "  --status-every N         a status line after every N finished books (20)\n"
    "  --status-format FMT      text or json (one object per line)\n"
    "  --io BACKEND             auto, uring or epoll (auto: io_uring where allowed)\n"
    "  --retries N              retries of a transient failure per book (5)\n"
    "  --stall-timeout SECONDS  a transfer with no byte for this long is retried (60)\n"
    "  --ca-file FILE           also trust this CA for HTTPS\n"
    "  --max-consecutive-failures N  stop taking books after N run-level failures in a\n"
    "                           row: wrong passphrase, authentication, destination (10)\n"
    "  --header-file FILE       request headers for the source, one 'Name: value' a line,\n"
    "                           reread whenever the file changes (rotating tokens)\n"
    "  --oauth FILE             OAuth2 credentials JSON (client_id, client_secret,\n"
    "                           refresh_token, token_uri): quire keeps a token fresh\n"
    "  --force                  fetch even when the destination holds the same ETag\n"
    "  --dest s3://BUCKET[/PREFIX]  S3-compatible bucket; credentials from AWS_ACCESS_KEY_ID,\n"
    "                           AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, region from AWS_REGION\n"
    "  --s3-endpoint URL        S3-compatible endpoint, path-style (MinIO, R2); also\n"
    "                           AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL\n"
    "  --part-size SIZE         books above this go by multipart upload (64MiB, min 5MiB)\n"
    "  --max-upload-rate SIZE   S3: byte rate cap per upload, e.g. 10MiB (for shared links)\n"
    "  --staging-max SIZE       bound on staged plaintext; downloads wait when it is full\n"
    "  --batch N                benchmark only: the old design, N books at a time\n"
    "  --help, --version\n"
    "Exit: 0 all delivered or skipped, 1 some failed, 2 usage or configuration, 130 signal.\n";

enum {
        OPT_SOURCE = 256,
        OPT_DEST,
        OPT_PASSFILE,
        OPT_STAGING,
        OPT_JOURNAL,
        OPT_QUEUE,
        OPT_WORKERS,
        OPT_DOWNLOADS,
        OPT_UPLOADS,
        OPT_THREADS,
        OPT_CPUS,
        OPT_STATUS_EVERY,
        OPT_STATUS_FORMAT,
        OPT_IO,
        OPT_RETRIES,
        OPT_STALL,
        OPT_CA,
        OPT_MAX_FAIL,
        OPT_STAGING_MAX,
        OPT_MAX_UPLOAD_RATE,
        OPT_BATCH,
        OPT_HEADER_FILE,
        OPT_OAUTH,
        OPT_FORCE,
        OPT_S3_ENDPOINT,
        OPT_PART_SIZE,
        OPT_HELP,
        OPT_VERSION,
};

static const struct option run_options[] = {
    {"source", required_argument, NULL, OPT_SOURCE},
    {"dest", required_argument, NULL, OPT_DEST},
    {"passphrase-file", required_argument, NULL, OPT_PASSFILE},
    {"staging", required_argument, NULL, OPT_STAGING},
    {"journal", required_argument, NULL, OPT_JOURNAL},
    {"queue-size", required_argument, NULL, OPT_QUEUE},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"downloads", required_argument, NULL, OPT_DOWNLOADS},
    {"uploads", required_argument, NULL, OPT_UPLOADS},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"cpus", required_argument, NULL, OPT_CPUS},
    {"status-every", required_argument, NULL, OPT_STATUS_EVERY},
    {"status-format", required_argument, NULL, OPT_STATUS_FORMAT},
    {"io", required_argument, NULL, OPT_IO},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"stall-timeout", required_argument, NULL, OPT_STALL},
    {"ca-file", required_argument, NULL, OPT_CA},
    {"max-consecutive-failures", required_argument, NULL, OPT_MAX_FAIL},
    {"staging-max", required_argument, NULL, OPT_STAGING_MAX},
    {"max-upload-rate", required_argument, NULL, OPT_MAX_UPLOAD_RATE},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"header-file", required_argument, NULL, OPT_HEADER_FILE},
    {"oauth", required_argument, NULL, OPT_OAUTH},
    {"force", no_argument, NULL, OPT_FORCE},
    {"s3-endpoint", required_argument, NULL, OPT_S3_ENDPOINT},
    {"part-size", required_argument, NULL, OPT_PART_SIZE},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, const char *a, const char *b)
{
        char msg[512];
        snprintf(msg, sizeof msg, fmt, a, b);
        qlog("%s (see quire run --help)", msg);
        return -1;
}

static int parse_count(const char *opt, const char *arg, unsigned lo, unsigned hi, unsigned *out)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || v < lo || v > hi) {
                char range[64];
                snprintf(range, sizeof range, "a whole number from %u to %u", lo, hi);
                qlog("%s: expected %s, got '%s'", opt, range, arg);
                return -1;
        }
        *out = (unsigned)v;
        return 0;
}

static int parse_bytes(const char *opt, const char *arg, uint64_t *out)
{
        if (parse_size(arg, out) < 0)
                return usage_error("%s: expected a size such as 64MiB, 512KiB or 1GiB, got '%s'",
                                   opt, arg);
        return 0;
}

/* "0,2-3" → {0, 2, 3}. */
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
        return usage_error("--cpus: expected a list such as 0,2-3, got '%s'%s", arg, "");
}

static int parse_option(struct run_opts *o, int opt, const char *arg)
{
        const char *name = NULL;
        for (const struct option *ro = run_options; ro->name; ro++)
                if (ro->val == opt)
                        name = ro->name;
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", name ? name : "?");
        struct run_config *cfg = &o->run;
        switch (opt) {
        case OPT_SOURCE:
                o->source.tmpl = arg;
                return 0;
        case OPT_DEST:
                o->sink.dest = arg;
                return 0;
        case OPT_PASSFILE:
                o->passfile = arg;
                return 0;
        case OPT_STAGING:
                cfg->staging = arg;
                return 0;
        case OPT_JOURNAL:
                cfg->journal_path = arg;
                return 0;
        case OPT_CA:
                o->source.ca_file = o->sink.ca_file = arg;
                return 0;
        case OPT_HEADER_FILE:
                o->source.header_file = arg;
                return 0;
        case OPT_OAUTH:
                o->source.oauth_file = arg;
                return 0;
        case OPT_FORCE:
                cfg->force = true;
                return 0;
        case OPT_S3_ENDPOINT:
                o->sink.s3_endpoint = arg;
                return 0;
        case OPT_PART_SIZE:
                if (parse_bytes(flag, arg, &o->sink.part_size) < 0)
                        return -1;
                if (o->sink.part_size < 5u << 20)
                        return usage_error("%s: S3 parts are at least 5MiB, got '%s'", flag, arg);
                if (o->sink.part_size > 5ull << 30)
                        return usage_error("%s: S3 parts are at most 5GiB, got '%s'", flag, arg);
                return 0;
        case OPT_QUEUE:
                return parse_count(flag, arg, 1, 1u << 20, &cfg->queue_size);
        case OPT_WORKERS:
                return parse_count(flag, arg, 1, 10000, &cfg->workers);
        case OPT_DOWNLOADS:
                return parse_count(flag, arg, 1, 10000, &cfg->downloads);
        case OPT_UPLOADS:
                return parse_count(flag, arg, 1, 10000, &cfg->uploads);
        case OPT_THREADS:
                return parse_count(flag, arg, 1, CPU_SETSIZE, &cfg->threads);
        case OPT_CPUS:
                return parse_cpus(arg, cfg);
        case OPT_STATUS_EVERY:
                return parse_count(flag, arg, 1, UINT_MAX, &cfg->status_every);
        case OPT_RETRIES:
                return parse_count(flag, arg, 0, 100, &cfg->retries);
        case OPT_STALL:
                if (parse_count(flag, arg, 1, 86400, &o->source.stall_timeout_s) < 0)
                        return -1;
                o->sink.stall_timeout_s = o->source.stall_timeout_s;
                return 0;
        case OPT_MAX_FAIL:
                return parse_count(flag, arg, 0, UINT_MAX, &cfg->max_consecutive_failures);
        case OPT_BATCH:
                return parse_count(flag, arg, 1, 1u << 20, &cfg->batch);
        case OPT_STAGING_MAX:
                return parse_bytes(flag, arg, &cfg->staging_max);
        case OPT_MAX_UPLOAD_RATE:
                return parse_bytes(flag, arg, &o->sink.max_upload_rate);
        case OPT_STATUS_FORMAT:
                if (strcmp(arg, "text") && strcmp(arg, "json"))
                        return usage_error("--status-format: expected text or json, got '%s'%s",
                                           arg, "");
                cfg->status_json = !strcmp(arg, "json");
                return 0;
        case OPT_IO:
                if (!strcmp(arg, "auto"))
                        cfg->io = LOOP_AUTO;
                else if (!strcmp(arg, "uring"))
                        cfg->io = LOOP_URING;
                else if (!strcmp(arg, "epoll"))
                        cfg->io = LOOP_EPOLL;
                else
                        return usage_error("--io: expected auto, uring or epoll, got '%s'%s", arg,
                                           "");
                return 0;
        default:
                return usage_error("unknown option%s%s", "", "");
        }
}

static void opts_defaults(struct run_opts *o)
{
        *o = (struct run_opts){0};
        run_config_defaults(&o->run);
        o->source.stall_timeout_s = o->sink.stall_timeout_s = 60;
}

/* Parses argv into o. Returns 0 to run, 1 when --help/--version was answered, -1 on a
 * usage error (already reported). */
static int parse_args(int argc, char **argv, struct run_opts *o)
{
        struct run_config *cfg = &o->run;
        opts_defaults(o);
        optind = 1;
        opterr = 0;
        int opt;
        while ((opt = getopt_long(argc, argv, "", run_options, NULL)) != -1) {
                if (opt == OPT_HELP) {
                        fputs(run_usage, stdout);
                        return 1;
                }
                if (opt == OPT_VERSION) {
                        printf("quire %s\n", QUIRE_VERSION);
                        return 1;
                }
                if (opt == '?' || opt == ':') {
                        const char *bad = argv[optind - 1];
                        return usage_error("%s: unknown option or missing value%s", bad, "");
                }
                if (parse_option(o, opt, optarg) < 0)
                        return -1;
        }
        if (optind < argc)
                cfg->barcodes_path = argv[optind++];
        if (optind < argc)
                return usage_error("unexpected argument '%s'%s", argv[optind], "");
        if (!o->source.tmpl)
                return usage_error("--source is required (a URL or path with {barcode})%s%s", "",
                                   "");
        if (!strstr(o->source.tmpl, "{barcode}"))
                return usage_error("--source '%s' has no {barcode}%s", o->source.tmpl, "");
        if (!o->sink.dest)
                return usage_error("--dest is required (a directory or s3://BUCKET[/PREFIX])%s%s",
                                   "", "");
        o->passphrase = read_passphrase(o->passfile, &cfg->passlen);
        if (!o->passphrase)
                return -1;
        cfg->passphrase = o->passphrase;
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
        char buf[4096];
        size_t n = strlen(dest);
        if (!strncmp(dest, "s3://", 5) || n >= sizeof buf)
                return 0;
        memcpy(buf, dest, n + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                return -errno;
        return 0;
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
        o->sink.interrupted = run_interrupted;
        char staging[4096], msg[1024];
        default_staging(o, staging, sizeof staging);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        struct run *r = NULL;
        struct source *src = NULL;
        struct sink *sink = NULL;
        int status = RUN_EXIT_USAGE;
        int err = dest_dir_prepare(o->sink.dest);
        if (err)
                snprintf(msg, sizeof msg, "--dest %s: %s", o->sink.dest, strerror(-err));
        /* The run's locks first: the sink sweeps what a killed run left only under them. */
        if (!err)
                err = run_new(&r, &o->run, msg, sizeof msg);
        if (!err)
                err = source_open(&src, &o->source, msg, sizeof msg);
        if (!err)
                err = sink_open(&sink, &o->sink, msg, sizeof msg);
        if (err)
                qlog("%s", msg);
        else
                status = run_execute(r, src, sink);
        if (err == -EINTR)
                status = RUN_EXIT_SIGNAL;
        run_free(r);
        if (sink)
                sink->ops->close(sink);
        if (src)
                src->ops->close(src);
        free_secret(o->passphrase);
        curl_global_cleanup();
        return status;
}
