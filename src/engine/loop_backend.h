/* What loop.c (dispatch, timers, generations, wake-ups) and its backends, loop_uring.c and
 * loop_epoll.c, share: the loop's common part, the ops table a backend fills, and the
 * helpers a backend completes requests with. Private to src/engine. */
#ifndef QUIRE_LOOP_BACKEND_H
#define QUIRE_LOOP_BACKEND_H

#include "quire/engine/loop.h"

#include <assert.h>

struct loop_backend {
        enum loop_kind kind;
        void (*destroy)(struct loop *l);
        /* Each starts a request for op (already marked pending) and completes it later
         * through loop_complete() from wait(), or loop_complete_later(). */
        void (*poll)(struct loop *l, struct loop_op *op, int fd, unsigned events);
        void (*read)(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len,
                     uint64_t off);
        void (*write)(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len,
                      uint64_t off);
        void (*fdatasync)(struct loop *l, struct loop_op *op, int fd);
        /* Withdraws the request the kernel holds for op (its tag still has the old gen). */
        void (*cancel)(struct loop *l, struct loop_op *op);
        void (*flush)(struct loop *l);
        /* Waits up to timeout_ns; returns the number of completions dispatched or -errno. */
        int (*wait)(struct loop *l, uint64_t timeout_ns);
};

/* A backend allocates its own state with this first (so a struct loop * is also a pointer
 * to the backend's state); loop.c owns these fields. */
struct loop {
        struct loop_op wake_op; /* first: on_wake finds the loop from it */
        const struct loop_backend *be;
        unsigned inflight; /* requests the kernel holds (io_uring), but for wake_op */
        int error;         /* sticky: the ring failed; loop_run() returns it */
        bool running;
        uint64_t firing_now;   /* the now of the timer pass under way; 0 outside one */
        struct loop_op timers; /* list head: armed timers by deadline, FIFO among equals */
        struct loop_op ready;  /* list head: completions known, due at the next turn */
        struct loop_op asyncs; /* list head: the loop_async handles' links */
        int wake_fd;           /* eventfd of loop_async_send(); lives as long as the loop */
        uint64_t wake_count;
};

/* io_uring (loop_uring.c) and epoll (loop_epoll.c). A backend returns its loop with only
 * be set; uring_open sets *why to a reason when io_uring is refused or too old. */
int loop_uring_open(struct loop **out, unsigned entries, const char **why);
int loop_epoll_open(struct loop **out);

/* Remembers the first failure of the ring; loop_run() returns it from then on. */
void loop_fail(struct loop *l, int err);
/* Queues op's completion for the next turn: synchronous results (epoll's pread) and
 * completions reaped while submitting never run a callback inside the submitting call. */
void loop_complete_later(struct loop *l, struct loop_op *op, int res);

#define LOOP_TAG_PTR_MASK ((UINT64_C(1) << 48) - 1)

static inline uint64_t loop_tag(const struct loop_op *op)
{
        assert((uintptr_t)op <= LOOP_TAG_PTR_MASK); /* user space below 2^48 (4-level paging) */
        return (uint64_t)(uintptr_t)op | ((uint64_t)op->gen << 48);
}

static inline struct loop_op *loop_tag_op(uint64_t tag)
{
        return (struct loop_op *)(uintptr_t)(tag & LOOP_TAG_PTR_MASK);
}

/* The op a completion belongs to, or NULL when it was cancelled since it was submitted. */
static inline struct loop_op *loop_tag_live(uint64_t tag)
{
        struct loop_op *op = loop_tag_op(tag);
        if (!op || op->gen != (uint16_t)(tag >> 48) || !op->pending || op->ready)
                return NULL;
        return op;
}

static inline void loop_complete(struct loop_op *op, int res)
{
        assert(op->pending && !op->ready);
        op->pending = false;
        op->fn(op, res);
}

#endif
