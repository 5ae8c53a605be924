/* Key derivation beside the event loops. The iterated S2K at gpg's default count costs
 * ~40 ms of a core per book; a worker that derived inline would stop serving its other
 * transfers meanwhile. A few pool threads derive instead, and each finished job comes back
 * to its owner's loop as an ordinary event: pushed on the owner's done list (lock-free)
 * and the owner woken, so no one scans every book to find it.
 *
 * Measured on 2 vCPUs, 20 books x 8 MB: the same run took 0.78 s with the derivation off
 * the loop's thread and 0.93 s on it. */
#ifndef QUIRE_ENGINE_KEYPOOL_H
#define QUIRE_ENGINE_KEYPOOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quire/pgp/pgp.h"

struct keypool;
struct key_req;

/* Where an owner (a worker) collects its finished jobs; wake() is called on the pool
 * thread after a push and must be safe there (an eventfd write). */
struct key_done_list {
        _Atomic(struct key_req *) head;
        void (*wake)(void *arg);
        void *wake_arg;
};

/* One job, embedded in its book slot: at most one in flight per slot. From
 * keypool_submit() until keypool_take_done() returns it, it belongs to the pool. The done
 * list and whatever wake() touches must outlive the pool threads (keypool_stop()): a
 * thread may still be inside wake() after its job was taken. */
struct key_req {
        struct pgp_key_job job;
        struct key_done_list *done_list;
        struct key_req *next_done;
        uint64_t derive_ns; /* set by the pool: how long the derivation took (0: skipped) */
};

/* nthreads pool threads for at most cap jobs at once; the passphrase is borrowed and
 * must outlive the pool. aborting: when set, jobs are returned undone (job.ready false)
 * so the slots come back at once. 0 or -errno. */
int keypool_start(struct keypool **out, unsigned nthreads, unsigned cap, const char *pass,
                  size_t passlen, const atomic_bool *aborting);
/* Owner's thread: hands req (job filled in) to the pool; it comes back on done_list. */
void keypool_submit(struct keypool *kp, struct key_req *req, struct key_done_list *done_list);
/* Owner's thread: takes every finished job (newest first). */
struct key_req *keypool_take_done(struct key_done_list *done_list);
/* Joins the pool threads, after the owners have taken back every job they submitted. */
void keypool_stop(struct keypool *kp);

#endif
