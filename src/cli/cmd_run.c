/* quire run: the main thread. Parses options, blocks the signals every thread must leave
 * to the signalfd, starts the workers, feeds barcodes into the queue as a stream, prints
 * status lines, and drains (first signal) or aborts (second). */
#include "cmds.h"

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

#include "quire/io/auth.h"
#include "quire/engine/engine.h"
#include "quire/engine/feeder.h"
#include "quire/engine/journal.h"
#include "quire/engine/mpmc.h"
#include "quire/base/util.h"

#define EXIT_USAGE  2
#define EXIT_SIGNAL 130

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

static int parse_option(struct run_config *cfg, int opt, const char *arg, const char **passfile)
{
        const char *name = NULL;
        for (const struct option *o = run_options; o->name; o++)
                if (o->val == opt)
                        name = o->name;
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", name ? name : "?");
        switch (opt) {
        case OPT_SOURCE:
                cfg->source = arg;
                return 0;
        case OPT_DEST:
                cfg->dest = arg;
                return 0;
        case OPT_PASSFILE:
                *passfile = arg;
                return 0;
        case OPT_STAGING:
                cfg->staging = arg;
                return 0;
        case OPT_JOURNAL:
                cfg->journal_path = arg;
                return 0;
        case OPT_CA:
                cfg->ca_file = arg;
                return 0;
        case OPT_HEADER_FILE:
                cfg->header_file = arg;
                return 0;
        case OPT_OAUTH:
                cfg->oauth_file = arg;
                return 0;
        case OPT_FORCE:
                cfg->force = true;
                return 0;
        case OPT_S3_ENDPOINT:
                cfg->s3_endpoint = arg;
                return 0;
        case OPT_PART_SIZE:
                if (parse_bytes(flag, arg, &cfg->part_size) < 0)
                        return -1;
                if (cfg->part_size < 5u << 20)
                        return usage_error("%s: S3 parts are at least 5MiB, got '%s'", flag, arg);
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
                return parse_count(flag, arg, 1, 86400, &cfg->stall_timeout_s);
        case OPT_MAX_FAIL:
                return parse_count(flag, arg, 0, UINT_MAX, &cfg->max_consecutive_failures);
        case OPT_BATCH:
                return parse_count(flag, arg, 1, 1u << 20, &cfg->batch);
        case OPT_STAGING_MAX:
                return parse_bytes(flag, arg, &cfg->staging_max);
        case OPT_MAX_UPLOAD_RATE:
                return parse_bytes(flag, arg, &cfg->max_upload_rate);
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

static void config_defaults(struct run_config *cfg)
{
        *cfg = (struct run_config){
            .journal_path = "quire.journal",
            .queue_size = 100,
            .workers = 20,
            .downloads = 5,
            .uploads = 10,
            .status_every = 20,
            .io = LOOP_AUTO,
            .retries = 5,
            .stall_timeout_s = 60,
            .max_consecutive_failures = 10,
            .barcodes_path = "-",
        };
}

/* Parses argv into cfg. Returns 0 to run, 1 when --help/--version was answered, -1 on a
 * usage error (already reported). */
static int parse_args(int argc, char **argv, struct run_config *cfg)
{
        const char *passfile = NULL;
        config_defaults(cfg);
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
                if (parse_option(cfg, opt, optarg, &passfile) < 0)
                        return -1;
        }
        if (optind < argc)
                cfg->barcodes_path = argv[optind++];
        if (optind < argc)
                return usage_error("unexpected argument '%s'%s", argv[optind], "");
        if (!cfg->source)
                return usage_error("--source is required (a URL or path with {barcode})%s%s", "",
                                   "");
        if (!strstr(cfg->source, "{barcode}"))
                return usage_error("--source '%s' has no {barcode}%s", cfg->source, "");
        if (!cfg->dest)
                return usage_error("--dest is required (a directory)%s%s", "", "");
        if (!strncmp(cfg->dest, "s3://", 5) && !cfg->part_size)
                cfg->part_size = 64u << 20;
        if (strncmp(cfg->dest, "s3://", 5))
                cfg->part_size = 0; /* directories take books whole */
        cfg->passphrase = read_passphrase(passfile, &cfg->passlen);
        if (!cfg->passphrase)
                return -1;
        return 0;
}

/* ---- setup ------------------------------------------------------------------------- */

static unsigned default_cpus(struct run_config *cfg)
{
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) < 0)
                return 1;
        cfg->ncpus = 0;
        for (int c = 0; c < CPU_SETSIZE; c++)
                if (CPU_ISSET(c, &set))
                        cfg->cpus[cfg->ncpus++] = c;
        return cfg->ncpus ? cfg->ncpus : 1;
}

/* Staging files a killed run left behind are never resumed: remove them. */
/* Default staging: inside a destination directory (so delivery is a rename), or
 * ./quire-staging beside the default journal for S3. */
static int staging_prepare(char *staging_buf, size_t len, struct run_config *cfg)
{
        if (!cfg->staging) {
                if (strncmp(cfg->dest, "s3://", 5))
                        snprintf(staging_buf, len, "%s/.quire-staging", cfg->dest);
                else
                        snprintf(staging_buf, len, "quire-staging");
                cfg->staging = staging_buf;
        }
        if (mkdir(cfg->staging, 0700) < 0 && errno != EEXIST) {
                qlog("--staging %s: %s", cfg->staging, strerror(errno));
                return -1;
        }
        int removed = remove_quire_parts(cfg->staging);
        if (removed < 0) {
                qlog("--staging %s: %s", cfg->staging, strerror(-removed));
                return -1;
        }
        if (removed)
                qlog("removed %d staging files left by an earlier run", removed);
        return 0;
}

struct main_state {
        struct run *r;
        uint64_t invalid;
        uint64_t pushed;
        int signals;
};

/* ---- feeding ----------------------------------------------------------------------- */

static void kick_hungry_workers(struct run *r)
{
        atomic_thread_fence(memory_order_seq_cst);
        for (unsigned i = 0; i < r->nworkers; i++)
                if (atomic_exchange(&r->workers[i].hungry, false))
                        worker_kick(&r->workers[i]);
}

static void kick_all_workers(struct run *r)
{
        for (unsigned i = 0; i < r->nworkers; i++)
                worker_kick(&r->workers[i]);
}

static void close_intake(struct run *r)
{
        if (atomic_exchange(&r->intake_closed, true))
                return;
        kick_all_workers(r);
}

/* Moves barcodes from the list into the queue until it is full, the list ends, or (in
 * --batch mode) the current batch is queued. */
static void feed(struct main_state *m, struct feeder *f, struct queue_item *pending,
                 bool *have_pending)
{
        struct run *r = m->r;
        bool pushed = false;
        while (!atomic_load(&r->intake_closed)) {
                if (atomic_load(&r->failure_stop) || atomic_load(&r->aborting)) {
                        close_intake(r);
                        break;
                }
                if (r->cfg.batch && m->pushed % r->cfg.batch == 0 && m->pushed > 0 &&
                    atomic_load(&r->stats.ok) + atomic_load(&r->stats.failed) - m->invalid <
                        m->pushed)
                        break; /* the old design: the whole batch must finish first */
                if (!*have_pending) {
                        const char *why = NULL;
                        enum feeder_result fr =
                            feeder_next(f, pending->barcode, &pending->line, &why);
                        if (fr == FEED_EOF || fr == FEED_ERROR) {
                                if (fr == FEED_ERROR)
                                        qlog("%s: read: %s", r->cfg.barcodes_path, strerror(errno));
                                close_intake(r);
                                break;
                        }
                        if (fr == FEED_INVALID) {
                                qlog("%s:%llu: invalid barcode: %s", r->cfg.barcodes_path,
                                     (unsigned long long)pending->line, why);
                                m->invalid++;
                                progress_count(r, OUTCOME_FAILED, 0);
                                continue;
                        }
                        if (journal_delivered(r->journal, pending->barcode)) {
                                progress_count(r, OUTCOME_SKIPPED, 0);
                                continue;
                        }
                        *have_pending = true;
                }
                if (!mpmc_try_push(r->queue, pending))
                        break;
                *have_pending = false;
                m->pushed++;
                pushed = true;
        }
        if (pushed)
                kick_hungry_workers(r);
}

static void on_signal(struct main_state *m, int sfd)
{
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof si) != sizeof si)
                return;
        struct run *r = m->r;
        if (++m->signals == 1) {
                unsigned in_flight = 0;
                for (unsigned i = 0; i < r->nworkers; i++)
                        in_flight += r->workers[i].busy_books;
                qlog("%s: finishing %u books in flight and %zu queued; taking no new ones. "
                     "Press Ctrl-C again to abort.",
                     si.ssi_signo == SIGTERM ? "SIGTERM" : "interrupted", in_flight,
                     mpmc_size(r->queue));
                close_intake(r);
        } else if (m->signals == 2) {
                qlog("aborting: dropping the books in flight");
                atomic_store(&r->aborting, true);
                kick_all_workers(r);
        }
}

static void main_loop(struct main_state *m, struct feeder *f, int sfd)
{
        struct run *r = m->r;
        struct queue_item pending;
        bool have_pending = false;
        while (atomic_load(&r->workers_left) > 0) {
                feed(m, f, &pending, &have_pending);
                journal_sync_due(r->journal, 1000);
                auth_tick(r->auth);
                if (atomic_load(&r->failure_stop))
                        close_intake(r);
                struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN},
                                        {.fd = r->main_wake_fd, .events = POLLIN}};
                if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
                        break;
                if (pfd[0].revents & POLLIN)
                        on_signal(m, sfd);
                if (pfd[1].revents & POLLIN) {
                        uint64_t v;
                        ssize_t n = read(r->main_wake_fd, &v, sizeof v);
                        (void)n;
                }
        }
}

static int run_exit_status(struct main_state *m)
{
        struct run *r = m->r;
        if (m->signals)
                return EXIT_SIGNAL;
        for (unsigned i = 0; i < r->nworkers; i++)
                if (r->workers[i].exit_error)
                        return 1;
        if (atomic_load(&r->failure_stop)) {
                qlog("stopped early: %s", r->failure_reason);
                return 1;
        }
        return atomic_load(&r->stats.failed) ? 1 : 0;
}

/* Releases whatever run_setup() got, also after it failed halfway. */
static void run_release(struct run *r, struct feeder *f)
{
        if (r->journal)
                journal_close(r->journal);
        if (f)
                feeder_close(f);
        if (r->sink_opened)
                r->sink->close(r);
        auth_close(r->auth);
        mpmc_free(r->queue);
        if (r->main_wake_fd > 0)
                close(r->main_wake_fd);
        explicit_bzero(r->cfg.passphrase, r->cfg.passlen);
        free(r->cfg.passphrase);
        curl_global_cleanup();
}

static int run_setup(struct run *r, struct feeder **f, char *staging_buf, size_t len)
{
        char msg[512];
        r->sink = strncmp(r->cfg.dest, "s3://", 5) ? &sink_dir : &sink_s3;
        r->dest_dir_fd = -1;
        if (r->sink->open(r, msg, sizeof msg) < 0) {
                qlog("%s", msg);
                return -1;
        }
        r->sink_opened = true;
        if (staging_prepare(staging_buf, len, &r->cfg) < 0)
                return -1;
        if ((r->cfg.header_file || r->cfg.oauth_file) &&
            auth_open(&r->auth, r->cfg.header_file, r->cfg.oauth_file, r->cfg.ca_file, msg,
                      sizeof msg) < 0) {
                qlog("%s", msg);
                return -1;
        }
        int err = journal_open(&r->journal, r->cfg.journal_path);
        if (err < 0) {
                qlog("--journal %s: %s", r->cfg.journal_path, strerror(-err));
                return -1;
        }
        err = feeder_open(f, r->cfg.barcodes_path);
        if (err < 0) {
                qlog("%s: %s", r->cfg.barcodes_path, strerror(-err));
                return -1;
        }
        r->queue = mpmc_new(r->cfg.queue_size, sizeof(struct queue_item));
        r->main_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (!r->queue || r->main_wake_fd < 0) {
                qlog("out of memory");
                return -1;
        }
        /* A backend the kernel refuses is a configuration error, found before any book. */
        struct loop *probe;
        const char *why = NULL;
        err = loop_new(&probe, r->cfg.io, 8, &why);
        if (err < 0) {
                qlog("--io %s: %s", r->cfg.io == LOOP_URING ? "uring" : "auto",
                     err == -EPERM ? "io_uring_setup: not permitted (seccomp profile or "
                                     "kernel.io_uring_disabled); use --io epoll or auto"
                                   : strerror(-err));
                return -1;
        }
        loop_free(probe);
        atomic_store(&r->downloads.free, (int)r->cfg.downloads);
        atomic_store(&r->uploads.free, (int)r->cfg.uploads);
        return 0;
}

int cmd_run(int argc, char **argv)
{
        static struct run run; /* large (cpu list); one per process */
        struct run *r = &run;
        int pa = parse_args(argc, argv, &r->cfg);
        if (pa)
                return pa > 0 ? 0 : EXIT_USAGE;
        if (r->cfg.threads == 0) {
                if (r->cfg.ncpus == 0)
                        default_cpus(&r->cfg);
                r->cfg.threads = r->cfg.ncpus;
        }
        r->nworkers = r->cfg.threads < r->cfg.workers ? r->cfg.threads : r->cfg.workers;

        /* Every thread inherits this mask: the signals reach only the signalfd. */
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        /* A shell starts background jobs with SIGINT ignored; blocked, it still queues. */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_IGN);
        int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);

        char staging_buf[4096];
        struct feeder *f = NULL;
        curl_global_init(CURL_GLOBAL_DEFAULT);
        if (sfd < 0 || run_setup(r, &f, staging_buf, sizeof staging_buf) < 0) {
                run_release(r, f);
                return EXIT_USAGE;
        }

        struct main_state m = {.r = r};
        progress_init(r, feeder_count(r->cfg.barcodes_path));
        r->workers = calloc(r->nworkers, sizeof *r->workers);
        r->start_ns = now_ns();
        if (!r->workers || keypool_start(r, r->nworkers) < 0 || workers_start(r) < 0) {
                qlog("cannot start worker threads");
                exit(EXIT_USAGE); /* threads may be running: no orderly teardown */
        }
        main_loop(&m, f, sfd);
        workers_join(r);
        keypool_stop(r);
        progress_print(r, "summary");
        int rc = run_exit_status(&m);
        free(r->workers);
        run_release(r, f);
        return rc;
}
