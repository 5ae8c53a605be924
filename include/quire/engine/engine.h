/* The streaming engine behind `quire run`: the run's shared state, the worker threads, one
 * book's state machine, and the source and sink interfaces they drive.
 *
 * main thread ── feeder ──▶ mpmc queue ──▶ worker (one per CPU, its own loop and curl multi)
 *                                             └─ book slots: wait for a download slot, GET
 *                                                and decrypt inline into a staging file,
 *                                                verify, deliver, journal. */
#ifndef QUIRE_ENGINE_H
#define QUIRE_ENGINE_H

#include <curl/curl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "quire/engine/feeder.h"
#include "quire/engine/loop.h"
#include "quire/pgp/pgp.h"
#include "quire/engine/status.h"
#include "quire/engine/worker.h"

struct pgp_dec;
struct mpmc;
struct journal;
struct run;
struct book;
struct keypool;

struct run_config {
        const char *source; /* template with {barcode}: http(s)://, file://, or a path */
        const char *dest;   /* directory, or s3://BUCKET[/PREFIX] */
        const char *staging;
        const char *journal_path;
        const char *ca_file;
        char *passphrase;
        size_t passlen;
        unsigned queue_size, workers, downloads, uploads, threads;
        int cpus[CPU_SETSIZE];
        unsigned ncpus;
        unsigned status_every;
        bool status_json;
        enum loop_kind io;
        unsigned retries;
        unsigned stall_timeout_s;
        unsigned max_consecutive_failures;
        uint64_t staging_max;
        uint64_t max_upload_rate; /* bytes/s per upload, 0 = unlimited */
        unsigned batch;           /* benchmark-only: the old design's batches; 0 = streaming */
        const char *barcodes_path;
        /* GRIN and S3 */
        const char *header_file; /* extra request headers, reread when it changes */
        const char *oauth_file;  /* OAuth2 installed-app credentials (JSON) */
        bool force;              /* fetch even when the destination holds the same ETag */
        const char *s3_endpoint; /* path-style endpoint (MinIO, R2, s3rver); NULL = AWS */
        uint64_t part_size;      /* books larger than this go by multipart upload */
};

/* A global limit shared by all workers (downloads in flight, uploads in flight). */
struct slots {
        atomic_int free;
};
bool slots_try_acquire(struct slots *s);
/* Releases one slot and wakes the workers that wait for one. */
void slots_release(struct run *r, struct slots *s);
/* Wakes the workers with books waiting for a download slot or staging room. */
void wake_download_waiters(struct run *r);
/* Wakes the workers with books waiting for a download slot or staging room. */
void wake_download_waiters(struct run *r);

/* What the queue carries: a validated barcode and the line it came from. */
struct queue_item {
        uint64_t line;
        char barcode[BARCODE_MAX + 1];
};

/* One-shot poll entry for a socket libcurl asked us to watch. */
struct sock {
        struct loop_op op;
        struct worker *w;
        curl_socket_t fd;
        unsigned events;
        struct sock *next_free;
};

struct worker {
        struct run *run;
        unsigned id;
        int cpu; /* -1: not pinned */
        pthread_t thread;
        int wake_fd; /* eventfd: new barcodes, a freed slot, drain or abort */
        uint64_t wake_buf;
        struct loop_op wake_op;
        struct loop *loop;
        CURLM *multi;
        struct loop_op curl_timer;
        struct loop_op pump_op; /* a deferred worker_pump(): never recurse from a book's end */
        struct sock *socks, *free_socks;
        struct book *books;
        unsigned nbooks, busy_books;
        atomic_bool hungry;    /* has free book slots and found the queue empty */
        atomic_int waiting_dl; /* books waiting for a download slot */
        atomic_int waiting_ul; /* books waiting for an upload slot */
        bool stopping;
        int exit_error;
};

/* Destination: delivers a verified staging file, asynchronously, then calls
 * book_delivered(). Implementations: sink_dir.c, sink_s3.c. */
struct sink {
        const char *name;
        /* Checks the configuration before the first book; 0 or -errno with msg set. */
        int (*open)(struct run *r, char *msg, size_t msglen);
        void (*deliver)(struct book *b);
        /* Abandons an in-progress delivery (second Ctrl-C): leaves nothing partial. */
        void (*abort)(struct book *b);
        void (*close)(struct run *r);
        /* Optional: looks the book up at the destination (skip-unchanged); calls
         * book_lookup_done() with the stored encrypted-etag, or NULL when absent. */
        void (*lookup)(struct book *b);
};
extern const struct sink sink_dir, sink_s3;

enum book_state {
        BOOK_IDLE,
        BOOK_LOOKUP, /* asking the destination whether it holds the book already */
        BOOK_WAIT_DOWNLOAD,
        BOOK_DOWNLOADING,
        BOOK_FINISHING, /* flushing staged plaintext, syncing it */
        BOOK_WAIT_UPLOAD,
        BOOK_UPLOADING,
        BOOK_BACKOFF,
};

#define BOOK_WBUFS     4
#define BOOK_WBUF_SIZE (256 * 1024)
#define BOOK_RBUF_SIZE (256 * 1024)

struct wbuf {
        struct loop_op op;
        struct book *book;
        uint8_t *data;
        size_t len;
        uint64_t off;
};

struct book {
        struct worker *w;
        enum book_state state;
        struct queue_item item;
        unsigned attempt;
        struct pgp_dec *dec;
        EVP_MD_CTX *sha256;
        uint8_t sha256_raw[32];
        char sha256_hex[65];
        /* With a part size (S3), the SHA-256 of each part_size piece of the plaintext,
         * computed inline as it is staged, for the parts' x-amz-checksum-sha256. */
        EVP_MD_CTX *part_sha256_ctx;
        uint8_t (*part_sha256)[32];
        unsigned nparts, parts_cap;
        /* staging */
        int staging_fd;
        char staging_path[4096];
        uint64_t staged;         /* plaintext bytes handed to writes */
        uint64_t staged_counted; /* of those, counted in run->staging_used */
        struct wbuf wbufs[BOOK_WBUFS];
        /* Flow control: the source waits (a paused transfer, a deferred read) while the
         * staging buffers cannot take what it would deliver. */
        bool src_waiting;
        size_t src_wait_len;
        unsigned wbuf_cur, writes_pending;
        int write_error;
        struct loop_op sync_op;
        /* source */
        struct xfer dl;
        long http_status;
        char etag[128];      /* the source's ETag, quotes stripped */
        char dest_etag[128]; /* the encrypted-etag the destination stored with the book */
        bool source_head;    /* the next request is a HEAD to compare ETags */
        char errbuf[CURL_ERROR_SIZE];
        struct curl_slist *req_headers; /* this request's credentials (auth.h) */
        uint64_t last_byte_ns;          /* stall detection: when the source last sent */
        bool stalled;
        /* The key derived beside the loop (keypool.c): the first bytes wait meanwhile. */
        struct pgp_key_job key_job;
        atomic_bool key_inflight; /* a pool thread owns key_job */
        bool key_tried, key_waiting;
        size_t key_wait_len; /* file source: bytes in rbuf to feed once the key is there */
        unsigned auth_gen;
        unsigned retry_after_s;
        int feed_error; /* pgp error that stopped the transfer */
        int src_fd;
        uint8_t *rbuf;
        uint64_t src_off;
        struct loop_op src_op;
        /* retry timer */
        struct loop_op timer;
        uint64_t started_ns, dl_started_ns, ul_started_ns;
        bool holds_download, holds_upload;
        bool retry_upload; /* the backoff leads back to the upload, the staging file kept */
        bool space_wait;   /* the failure was a full staging disk others will free */
        /* sink's per-book state */
        struct xfer ul;
        struct loop_op sink_op;
        void *sink_data;
        char detail[512];
};

struct run {
        struct run_config cfg;
        struct keypool *keypool;
        struct auth *auth;
        const struct sink *sink;
        void *sink_state;
        bool sink_opened;
        struct mpmc *queue;
        struct journal *journal;
        struct stats stats;
        struct slots downloads, uploads;
        atomic_uint_fast64_t staging_used; /* staged plaintext bytes, for --staging-max */
        atomic_bool staging_full;          /* ENOSPC with other books staged: hold downloads */
        atomic_bool intake_closed;         /* no more barcodes will be queued */
        atomic_bool aborting;              /* second signal: drop everything in flight */
        atomic_uint consecutive_failures;
        atomic_bool failure_stop; /* too many run-level failures in a row */
        char failure_reason[256];
        int main_wake_fd; /* eventfd: workers tell the main thread a book finished */
        struct worker *workers;
        unsigned nworkers;
        atomic_uint workers_left;
        int dest_dir_fd;
        uint64_t start_ns;
        /* progress.c */
        pthread_mutex_t progress_lock;
        struct status_window window;
        int64_t total; /* books in the list, -1 when unknown */
        uint64_t done;
};

enum outcome { OUTCOME_OK, OUTCOME_FAILED, OUTCOME_SKIPPED };
void progress_init(struct run *r, int64_t total);
/* Counts a finished book (bytes: plaintext delivered) and prints the status line when
 * it completes a multiple of --status-every. Thread-safe. */
void progress_count(struct run *r, enum outcome o, uint64_t bytes);
/* event: "status" or "summary". */
void progress_print(struct run *r, const char *event);

/* Wakes a worker's loop (eventfd write). */
void worker_kick(struct worker *w);
/* Starts what can start: waiting books whose slot is free, new books from the queue. */
void worker_pump(struct worker *w);
/* worker_pump() at the next turn of the loop. */
void worker_pump_soon(struct worker *w);
/* Starts the worker threads; each builds its loop and curl multi inside the thread. */
int workers_start(struct run *r);
void workers_join(struct run *r);

/* Key derivation beside the loops (keypool.c): one job per book at most. */
int keypool_start(struct run *r, unsigned nthreads);
/* Queues b->key_job; a pool thread derives it, clears key_inflight and kicks b's worker. */
void keypool_submit(struct book *b);
/* Joins the pool threads; after the workers (their books) are done. */
void keypool_stop(struct run *r);

/* Book slots (book.c) */
int book_init(struct book *b, struct worker *w);
void book_destroy(struct book *b);
void book_start(struct book *b, const struct queue_item *item);
/* Called by the worker when slots may have freed up: starts what can start. */
void book_pump(struct book *b);
void book_abort(struct book *b);
/* Sinks call this once per deliver(): rc 0, or -errno with detail; transient failures
 * are retried. */
void book_delivered(struct book *b, int rc, bool transient, const char *detail);
/* Sinks' lookup() calls this: etag is the destination's stored encrypted-etag (NULL when
 * the book is not there); rc < 0 when the lookup itself failed. */
void book_lookup_done(struct book *b, int rc, const char *etag, const char *detail);
/* Sources call these: ciphertext in (returns 0 or the PGP_E* code that must stop the
 * transfer), and the end of the download. */
struct source_result {
        const char *error; /* NULL: the source sent the whole body */
        bool transient;    /* worth a retry (network, 5xx, 429, stall) */
        bool run_level;    /* points at the whole run (authentication) */
};
int book_feed(struct book *b, const uint8_t *p, size_t n);
/* Bytes the staging buffers can take now without a synchronous write. A source that
 * would deliver more sets src_waiting/src_wait_len and waits for source_resume(). */
size_t book_staging_room(const struct book *b);
void book_download_done(struct book *b, const struct source_result *res);
/* The source answered the HEAD (skip-unchanged). */
void book_head_done(struct book *b, const struct source_result *res);

/* Fills out with the template, {barcode} replaced. Returns 0 or -ENAMETOOLONG. */
int expand_template(const char *tmpl, const char *barcode, char *out, size_t outlen);

#endif
