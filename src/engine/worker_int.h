/* A worker thread, private to the engine: one event loop, one curl multi handle, a fixed
 * set of book slots filled from the run's queue. */
#ifndef QUIRE_ENGINE_WORKER_INT_H
#define QUIRE_ENGINE_WORKER_INT_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keypool.h"
#include "quire/engine/loop.h"
#include "quire/engine/worker.h"

struct run;
struct book;
struct sock;

struct worker {
        struct run *run;
        unsigned id;
        int cpu; /* -1: not pinned */
        pthread_t thread;
        /* eventfd: new barcodes, a freed slot, a finished key job, drain or abort. Written
         * by other threads until every one of them has ended: closed by workers_free(). */
        int wake_fd;
        uint64_t wake_buf;
        struct loop_op wake_op;
        struct loop *loop;
        CURLM *multi;
        struct loop_op curl_timer;
        struct loop_op pump_op;  /* a deferred worker_pump(): never recurse from a book's end */
        struct sock *socks;      /* every socket entry ever made (grows, never shrinks) */
        struct sock *free_socks; /* those not watching a socket now */
        struct book **books;
        unsigned nbooks, busy_books;
        atomic_bool hungry;    /* has free book slots and found the queue empty */
        atomic_int waiting_dl; /* books waiting for a download slot */
        atomic_int waiting_ul; /* books waiting for an upload slot */
        struct key_done_list key_done;
        unsigned keys_out; /* key jobs the pool has not given back */
        unsigned holds;    /* worker_hold(): cleanups still running */
        bool aborted;
        int exit_error;
};

/* Wakes a worker's loop (eventfd write): any thread. */
void worker_kick(struct worker *w);
/* Starts what can start at the next turn of the loop: waiting books whose slot is free,
 * new books from the queue. */
void worker_pump_soon(struct worker *w);
/* A book slot became free. */
void worker_book_ended(struct worker *w);

/* The run's threads: started after the run is set up, joined before it is torn down.
 * workers_free() closes what other threads may still write to (wake fds): call it after
 * the key pool has stopped. */
int workers_start(struct run *r);
void workers_join(struct run *r);
void workers_free(struct run *r);
/* Main thread: wakes every worker / those that said they were hungry. */
void workers_kick_all(struct run *r);
void workers_kick_hungry(struct run *r);
/* Main thread: books in flight across the workers (approximate while they run). */
unsigned workers_busy_books(const struct run *r);

#endif
