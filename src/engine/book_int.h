/* What the three parts of a book slot share: book.c (the state machine: stages, slots,
 * outcomes, retries, the slot's life), book_fetch.c (the download: the source's bytes through
 * the decryptor into the stage, the key pool, HEAD and resume) and book_deliver.c (the
 * destination: the lookup before, the delivery after). Nothing outside these three files
 * includes it: struct book stays private to the slot. */
#ifndef QUIRE_ENGINE_BOOK_INT_H
#define QUIRE_ENGINE_BOOK_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "book.h"
#include "derived_int.h"
#include "digest.h"
#include "keypool.h"
#include "quire/engine/sink.h"
#include "quire/engine/source.h"
#include "run_int.h"
#include "staging.h"

/* Plaintext out can exceed ciphertext in by the decryptor's held-back MDC tail. */
#define STAGING_SLACK 64
#define BOOK_META_MAX 5
/* A resumable transfer cut after moving the book on by this much does not spend a retry. */
#define BOOK_PROGRESS_FREE (1u << 20)

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

struct book {
        struct worker *w;
        struct run *r;
        enum book_state state;
        struct queue_item item;
        unsigned attempt;
        struct pgp_dec *dec;
        struct digest digest;
        struct stage stage;
        /* source */
        struct source_slot *src;
        bool head;      /* the request in flight is a HEAD (skip-unchanged) */
        uint64_t fed;   /* body bytes handed to the decryptor */
        bool room_wait; /* the source is paused until the stage has room */
        size_t room_need;
        int feed_error;  /* what stopped the transfer from our side */
        int restart_err; /* a new stage could not be made when starting over */
        int first_byte;  /* of the body, -1 before it: names an HTML page for what it is */
        char etag[SOURCE_ETAG_MAX];
        /* the key, derived beside the loop */
        struct key_req key;
        bool key_out;  /* the pool owns key */
        bool key_wait; /* the source is paused until the key is back */
        /* destination */
        struct sink_slot *snk;
        struct lookup lookup;
        struct delivery delivery;
        struct delivery_meta meta[BOOK_META_MAX];
        char name[BARCODE_MAX + 16], original[FEEDER_FILE_MAX + 1], acquired[21];
        char dest_etag[SINK_ETAG_MAX];
        /* retries */
        struct loop_op timer;
        unsigned retry_after_s;
        bool retry_upload; /* the backoff leads back to the upload, the stage kept */
        /* Resuming a broken download: the decryptor, digests and stage stay as they were
         * at `fed`, and the retry asks for the rest (If-Range: resume_etag). */
        bool resume, resuming, restart_wait, no_resume;
        char resume_etag[SOURCE_ETAG_MAX];
        unsigned resumes;
        uint64_t resumed_bytes; /* not fetched again thanks to resuming */
        bool space_wait;        /* the failure was a full staging disk others will free */
        uint64_t attempt_fed0;  /* fed when this attempt's request began */
        bool progressed;        /* the failed attempt moved the book on: a free retry */
        unsigned free_attempts; /* of attempt, those not counted against --retries */
        const char *cause;      /* the failure's label, should it be retried (metrics) */
        uint64_t started_ns, dl_started_ns, ul_started_ns;
        bool holds_download, holds_upload;
        char detail[512];
        /* derived outputs (NULL: the run makes none) */
        struct derived *der;
        bool der_wait;        /* the source is paused until the reader has room */
        unsigned finish_wait; /* of the stage's sync and the reader's end, those to come */
        bool verdict;         /* the attempt's digest is final (an extract journals it) */
        int plain_err;        /* a plaintext source's bytes refused (-errno) */
        bool der_failed;      /* the attempt's derived outputs could not be set up */
        bool der_after_raw;   /* the derived outputs' lookup follows the raw one's */
};

/* book.c: stages, slots and outcomes. */
bool book_plain(const struct book *b);
void book_set_stage(struct book *b, enum book_state to);
void book_release_download(struct book *b);
void book_release_upload(struct book *b);
void book_stage_drop(struct book *b);
void book_end(struct book *b);
void book_skip(struct book *b);
void book_finish(struct book *b, bool ok, bool run_level, const char *detail);
void book_failed(struct book *b, bool transient, bool run_level, bool upload, const char *detail);
void book_staging_failed(struct book *b, int err);

/* book_fetch.c: the download. */
extern const struct source_events book_source_events;
void book_wait_download(struct book *b);
void book_download_begin(struct book *b);
void book_on_stage_room(void *owner);
void book_on_stage_synced(void *owner, int rc);
void book_on_derived_room(void *owner);
void book_on_derived_done(void *owner);

/* book_deliver.c: the destination. */
void book_lookup_begin(struct book *b);
void book_upload_begin(struct book *b);
void book_on_derived_delivered(void *owner, int rc, bool transient, const char *detail);
void book_on_derived_looked_up(void *owner, bool all_found);

#endif
