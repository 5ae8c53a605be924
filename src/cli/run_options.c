/* quire run's option table. cmd_run.c still parses with its own getopt array (run_usage,
 * run_options, parse_option) until the engine restructure lands; this table gives the
 * man page and the completion meanwhile, and tests/e2e/test_install.sh fails when the two
 * disagree. The conversion moves this table into cmd_run.c, switches parse_option on these
 * keys and deletes run_usage and run_options. */
#include "cmds.h"

enum {
        RUN_SOURCE = 256,
        RUN_DEST,
        RUN_PASSFILE,
        RUN_STAGING,
        RUN_STAGING_MAX,
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
        RUN_MAX_FAIL,
        RUN_STATUS_EVERY,
        RUN_STATUS_FORMAT,
        RUN_CA,
        RUN_HEADER_FILE,
        RUN_OAUTH,
        RUN_S3_ENDPOINT,
        RUN_PART_SIZE,
        RUN_MAX_UPLOAD_RATE,
        RUN_BATCH,
        RUN_VERSION,
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
    OPT("max-consecutive-failures", RUN_MAX_FAIL, "N", "10",
        "Stop taking books after N run-level failures in a row: wrong passphrase, "
        "authentication, destination."),
    OPT("status-every", RUN_STATUS_EVERY, "N", "20", "A status line after every N finished books.",
        .section = "Status"),
    OPT("status-format", RUN_STATUS_FORMAT, "FMT", "text", "text, or json: one object per line.",
        .values = "text json"),
    OPT("ca-file", RUN_CA, "FILE", NULL, "Also trust this CA for HTTPS.", .section = "GRIN and S3",
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
        "Books above this go to S3 by multipart upload (at least 5MiB)."),
    OPT("max-upload-rate", RUN_MAX_UPLOAD_RATE, "SIZE", "unlimited",
        "S3: byte rate cap per upload, e.g. 10MiB (for shared links)."),
    OPT("batch", RUN_BATCH, "N", NULL, "Benchmarks only: the old design, N books at a time.",
        .section = "Other"),
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
