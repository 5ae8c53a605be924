/* Where books come from, as the engine drives it. A source (HTTP(S), local files) is
 * opened by the io layer before the run and handed to the engine, which calls only its ops
 * table. A source never sees a book: a book slot owns one source slot and hears from it
 * through two callbacks, data() and done().
 *
 * Threads: slot_new, slot_free, begin, resume and abort run on the worker thread that
 * owns the slot; close on the main thread after every worker has ended. The callbacks are
 * called from the worker's loop, never from inside begin(); resume() may deliver data()
 * before it returns (the bytes the source held), so the owner calls it only where it can
 * take them. */
#ifndef QUIRE_ENGINE_SOURCE_H
#define QUIRE_ENGINE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SOURCE_ETAG_MAX 128
/* data() returns this to stop the flow without taking the bytes: the source holds them
 * and, after resume(), delivers again from the same offset. */
#define SOURCE_PAUSE 1

struct worker;
struct source_slot;
struct source_ops;

/* Implementations embed this first. */
struct source {
        const struct source_ops *ops;
        const char *kind; /* "http", "file": for messages */
};

enum source_status {
        SOURCE_OK,           /* the whole body arrived (or, for a HEAD, the answer) */
        SOURCE_NOT_FOUND,    /* 404/410, no such file: the source does not have it */
        SOURCE_TRANSIENT,    /* network, 5xx, 429, stall, too slow: worth a retry */
        SOURCE_UNAUTHORIZED, /* credentials refused (after one refresh, if any) */
        SOURCE_FAILED,       /* anything else that a retry will not change */
        SOURCE_STOPPED,      /* data() returned an error: the owner knows why */
};

struct source_result {
        enum source_status status;
        const char *detail;         /* one line naming what failed; valid during done() */
        const char *cause;          /* a transient failure's kind, a static word for the metrics
                                       ("reset", "stall", "slow", "timeout", ...); NULL: the engine
                                       names it from http_status ("5xx", "429", ...) */
        bool run_level;             /* points at the whole run (credentials, access) */
        unsigned retry_after_s;     /* the server asked for this pause; 0: none */
        long http_status;           /* 0 for files */
        char etag[SOURCE_ETAG_MAX]; /* normalized ETag, "" when none (files) */
        bool etag_weak;             /* W/: no good for If-Range, so no resuming */
        bool range_refused;         /* the server refused the range asked (416) */
        int64_t length;             /* body length when announced, else -1 */
};

struct source_request {
        const char *barcode;
        const char *file; /* the file name at the source (GRIN's list), NULL: from the
                             source's template */
        bool head;        /* only the answer's headers (ETag, length): no body */
        /* Resuming: the body from this offset on (HTTP: Range, with If-Range: the ETag
         * of the first answer). The first data() then comes at `offset` when the source
         * honoured it, or at 0 when it sent the whole body again (a server without
         * ranges, or one whose object changed): the owner starts over then. */
        uint64_t offset;
        const char *if_range; /* the strong ETag the rest must belong to (HTTP) */
};

struct source_events {
        /* Body bytes p[0..n) starting at offset off of the body. Returns 0 when taken,
         * SOURCE_PAUSE when not (see above), or a negative code that ends the transfer:
         * done() follows with SOURCE_STOPPED. */
        int (*data)(void *owner, uint64_t off, const uint8_t *p, size_t n);
        /* Once per begin(), unless abort() came first. */
        void (*done)(void *owner, const struct source_result *res);
        /* Optional: the whole body's length, when the source knows it, before its first
         * data(). A negative return ends the transfer at once (done() follows with
         * SOURCE_STOPPED): a book too large for the destination is refused before it is
         * downloaded. */
        int (*length)(void *owner, uint64_t length);
};

/* What a catalog knows of a book the source answered "not found" for (GRIN: a conversion
 * that failed, one in process, or one now requested). */
struct source_missing {
        /* The journal's outcome: "conversion-failed" (a failure), "requested", "in-process",
         * or another word for a book left for a later run ("not-requested"); NULL: a plain
         * failure. */
        const char *outcome;
        char detail[256];
};

struct source_ops {
        int (*slot_new)(struct source *s, struct worker *w, const struct source_events *ev,
                        void *owner, struct source_slot **out);
        void (*slot_free)(struct source_slot *ss);
        void (*begin)(struct source_slot *ss, const struct source_request *req);
        /* After data() returned SOURCE_PAUSE: the owner can take bytes again. */
        void (*resume)(struct source_slot *ss);
        /* Stops the transfer in progress; done() is not called. */
        void (*abort)(struct source_slot *ss);
        /* Optional: what becomes of a book the source does not have. Any worker thread;
         * quick (no I/O on the caller's thread). */
        void (*missing)(struct source *s, const char *barcode, struct source_missing *m);
        void (*close)(struct source *s);
};

#endif
