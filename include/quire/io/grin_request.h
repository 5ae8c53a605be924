/* Asking GRIN to convert books (_process), with GRIN's limits kept: batches of up to
 * `batch` barcodes a request, at most `in_flight` requests at once, never more books than
 * the room left in GRIN's queue (queue_max minus _in_process, counted at open, kept up to
 * date by every answer, counted again when the room runs out at most every 10 minutes),
 * and after a 429 (the queue is full) no request at all for the rest of the object's life,
 * without failing a book.
 *
 * It runs on a thread of its own with its own curl multi (curl_multi_poll, woken by
 * curl_multi_wakeup when a barcode arrives), so that any caller can use it: the engine's
 * main thread, a worker that met a 404, or a command line; its blocking parts (counting
 * _in_process, waiting for a new token) never stall a caller's loop. Its traffic is a
 * few small requests, so one thread costs nothing that matters.
 *
 *   struct grin_req_config c = {.batch = 1, .fn = outcome, .ud = me};
 *   grin_req_open(&r, &site, &c, msg, sizeof msg);
 *   grin_req_submit(r, "32101078166681", true);   ... any thread, any number
 *   grin_req_close(r);                              every outcome has been given */
#ifndef QUIRE_IO_GRIN_REQUEST_H
#define QUIRE_IO_GRIN_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quire/io/grin.h"

#define GRIN_QUEUE_MAX 50000 /* books GRIN's conversion queue holds */

enum grin_outcome {
        GRIN_REQUESTED,          /* GRIN said Success */
        GRIN_ALREADY_CONVERTED,  /* "already ... available for download" */
        GRIN_ALREADY_IN_PROCESS, /* "already ... process" */
        GRIN_REFUSED,            /* any other status: GRIN's text is the detail */
        GRIN_NOT_SENT,           /* GRIN's queue is full (a 429) or has no room: not a failure */
        GRIN_REQUEST_FAILED,     /* network, login, HTTP status, an answer without it */
};

/* "requested", "already converted", "already in process", "refused", "not requested",
 * "failed". */
const char *grin_outcome_name(enum grin_outcome o);

/* Called once per submitted barcode, on the request thread, in no particular order:
 * quick, and thread-safe towards the caller's other threads. detail is "" or one line. */
typedef void (*grin_outcome_fn)(void *ud, const char *barcode, enum grin_outcome o,
                                const char *detail);

struct grin_req_config {
        unsigned batch;       /* barcodes a request, 1..1000; 0: 1 */
        unsigned in_flight;   /* requests at once; 0: 2 */
        unsigned queue_max;   /* GRIN's queue capacity; 0: GRIN_QUEUE_MAX */
        unsigned pending_max; /* barcodes submitted and not yet sent; 0: 4096 */
        grin_outcome_fn fn;
        void *ud;
};

struct grin_req;

/* Counts _in_process (blocking) and starts the thread. site must outlive the object.
 * Returns 0, or as grin_list_fetch with a message. */
int grin_req_open(struct grin_req **out, const struct grin_site *site,
                  const struct grin_req_config *c, char *msg, size_t msglen);

/* Queues a barcode (valid by feeder_barcode_invalid) for a request. When pending_max are
 * waiting: waits for room when wait is set, else returns -EAGAIN. Returns 0. */
int grin_req_submit(struct grin_req *r, const char *barcode, bool wait);

struct grin_req_stats {
        uint64_t in_process_at_open; /* lines of _in_process when the object opened */
        uint64_t room;               /* books GRIN's queue can still take, as far as known */
        bool queue_full;             /* a 429 came: nothing more is sent */
        uint64_t requests;           /* _process requests sent */
};
void grin_req_stats(struct grin_req *r, struct grin_req_stats *out);

/* Waits until every submitted barcode has had its outcome, stops the thread, frees. */
void grin_req_close(struct grin_req *r);

#endif
