/* What sources and sinks may use of the worker thread they run on: its event loop, its
 * libcurl multi handle, and a hold that keeps the worker's loop turning while a cleanup
 * (an AbortMultipartUpload) finishes after its book has ended.
 *
 * Everything here is called on the worker's own thread, from its loop's callbacks. */
#ifndef QUIRE_ENGINE_WORKER_H
#define QUIRE_ENGINE_WORKER_H

#include <curl/curl.h>
#include <stdbool.h>

struct worker;
struct loop;

/* A libcurl transfer on a worker's multi handle. done() is called once, from the loop,
 * when libcurl reports the transfer finished; the handle has been removed from the multi
 * by then and may be reused at once. */
struct xfer {
        CURL *easy;
        void (*done)(struct xfer *x, CURLcode rc);
};

struct loop *worker_loop(struct worker *w);
/* Adds x->easy to the worker's multi handle. Returns 0, or -errno when libcurl refused it
 * (then done() is never called: the caller reports the failure itself). */
int worker_add_xfer(struct worker *w, struct xfer *x);
/* Stops a transfer; its done() is not called. Harmless when x is not added. */
void worker_remove_xfer(struct worker *w, struct xfer *x);

/* A hold keeps the worker's loop running after its books have ended, until released or
 * until the run's abort deadline passes (after a second Ctrl-C the worker waits at most
 * that long). Holds count; each worker_hold() needs one worker_release(). */
void worker_hold(struct worker *w);
void worker_release(struct worker *w);
/* True after a second Ctrl-C: cleanups should be as short as they can. */
bool worker_aborting(const struct worker *w);

#endif
