/* The io_uring backend: every request is an SQE tagged with its op and generation; one
 * io_uring_enter() per turn submits, waits (unless there is work already) and reaps. */
#include "loop_backend.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often a submission the kernel pushes back on (EBUSY, EAGAIN) is retried after
 * reaping completions, each retry waiting at most SUBMIT_WAIT_NS for one. */
#define SUBMIT_ATTEMPTS 100
#define SUBMIT_WAIT_NS  1000000

struct uring {
        struct loop base; /* first: a struct loop * is a struct uring * */
        struct io_uring ring;
};

static struct uring *uring_of(struct loop *l)
{
        return (struct uring *)l;
}

/* ---- completions ------------------------------------------------------------------- */

/* Consumes one CQE; returns its live op (NULL for a cancel's own completion or a
 * cancelled request's). */
static struct loop_op *uring_take(struct uring *u, struct io_uring_cqe *cqe, int *res)
{
        uint64_t tag = cqe->user_data;
        *res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        if (!tag)
                return NULL;
        if (loop_tag_op(tag) != &u->base.wake_op)
                u->base.inflight--;
        return loop_tag_live(tag);
}

/* Moves the completions the kernel has posted to the ready list, running no callback:
 * called from a submitting call, which must not dispatch. Returns how many it took, or
 * -errno when the ring failed. */
static int uring_reap(struct uring *u)
{
        /* DEFER_TASKRUN rings post completions only when asked; this also flushes an
         * overflowed CQ ring into the free room. */
        int ret = io_uring_get_events(&u->ring);
        if (ret < 0 && ret != -EBUSY && ret != -EAGAIN && ret != -EINTR)
                return ret;
        int n = 0;
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
                int res;
                struct loop_op *op = uring_take(u, cqe, &res);
                if (op)
                        loop_complete_later(&u->base, op, res);
                n++;
        }
        return n;
}

/* ---- submission -------------------------------------------------------------------- */

/* Hands every queued SQE to the kernel. EBUSY (completions the CQ ring has no room for)
 * and EAGAIN (no memory for requests) ask for completions to be reaped first: reap, wait
 * briefly when there was nothing to reap, and try again, a bounded number of times. */
static int uring_submit(struct uring *u)
{
        for (unsigned attempt = 0; attempt < SUBMIT_ATTEMPTS; attempt++) {
                int ret = io_uring_submit(&u->ring);
                if (ret >= 0 && !io_uring_sq_ready(&u->ring))
                        return 0;
                if (ret < 0 && ret != -EBUSY && ret != -EAGAIN && ret != -EINTR)
                        return ret;
                if (ret > 0)
                        continue; /* part of the batch went: submit the rest */
                int reaped = uring_reap(u);
                /* Wait only for requests the kernel has: some queued ones are not yet. */
                if (reaped == 0 && u->base.inflight > io_uring_sq_ready(&u->ring)) {
                        struct __kernel_timespec ts = {.tv_nsec = SUBMIT_WAIT_NS};
                        struct io_uring_cqe *cqe;
                        int w = io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts);
                        if (w < 0 && w != -ETIME && w != -EINTR && w != -EBUSY && w != -EAGAIN)
                                return w;
                        reaped = uring_reap(u);
                }
                if (reaped < 0)
                        return reaped;
        }
        return -EBUSY;
}

/* An SQE for op, or NULL when the ring failed (op then completes with the error). */
static struct io_uring_sqe *uring_sqe(struct uring *u, struct loop_op *op)
{
        struct io_uring_sqe *sqe;
        while (!(sqe = io_uring_get_sqe(&u->ring))) {
                int ret = uring_submit(u); /* the submission queue is full */
                if (ret < 0) {
                        loop_fail(&u->base, ret);
                        if (op)
                                loop_complete_later(&u->base, op, ret);
                        return NULL;
                }
        }
        return sqe;
}

/* A new request's SQE, already tagged with op (liburing's prep helpers set every field
 * but user_data), or NULL when the ring failed. */
static struct io_uring_sqe *uring_request(struct loop *l, struct loop_op *op)
{
        struct uring *u = uring_of(l);
        struct io_uring_sqe *sqe = uring_sqe(u, op);
        if (!sqe)
                return NULL;
        io_uring_sqe_set_data64(sqe, loop_tag(op));
        if (op != &u->base.wake_op)
                u->base.inflight++;
        return sqe;
}

static void uring_poll(struct loop *l, struct loop_op *op, int fd, unsigned events)
{
        struct io_uring_sqe *sqe = uring_request(l, op);
        if (sqe)
                io_uring_prep_poll_add(sqe, fd, events);
}

static void uring_read(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len,
                       uint64_t off)
{
        struct io_uring_sqe *sqe = uring_request(l, op);
        if (sqe)
                io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
}

static void uring_write(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len,
                        uint64_t off)
{
        struct io_uring_sqe *sqe = uring_request(l, op);
        if (sqe)
                io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
}

static void uring_fdatasync(struct loop *l, struct loop_op *op, int fd)
{
        struct io_uring_sqe *sqe = uring_request(l, op);
        if (sqe)
                io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
}

static void uring_cancel(struct loop *l, struct loop_op *op)
{
        struct uring *u = uring_of(l);
        /* Without an SQE the request stays until it completes; its generation drops it. */
        struct io_uring_sqe *sqe = uring_sqe(u, NULL);
        if (!sqe)
                return;
        io_uring_prep_cancel64(sqe, loop_tag(op), 0);
        io_uring_sqe_set_data64(sqe, 0);
}

static void uring_flush(struct loop *l)
{
        int ret = uring_submit(uring_of(l));
        if (ret < 0)
                loop_fail(l, ret);
}

static int uring_wait(struct loop *l, uint64_t timeout_ns)
{
        struct uring *u = uring_of(l);
        struct __kernel_timespec ts = {.tv_sec = (long long)(timeout_ns / 1000000000u),
                                       .tv_nsec = (long long)(timeout_ns % 1000000000u)};
        struct io_uring_cqe *cqe;
        /* Nothing to wait for: a kernel timeout of 0 would still cost a sleep and a wake. */
        int ret = timeout_ns ? io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL)
                             : io_uring_submit_and_get_events(&u->ring);
        if (ret == -EBUSY || ret == -EAGAIN)
                ret = uring_submit(u); /* what it reaps runs at the next turn */
        if (ret < 0 && ret != -ETIME && ret != -EINTR)
                return ret;
        int n = 0;
        while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
                int res;
                struct loop_op *op = uring_take(u, cqe, &res);
                if (!op)
                        continue;
                loop_complete(op, res);
                n++;
        }
        return n;
}

static void uring_destroy(struct loop *l)
{
        struct uring *u = uring_of(l);
        io_uring_queue_exit(&u->ring);
        free(u);
}

static const struct loop_backend uring_backend = {
    .kind = LOOP_URING,
    .destroy = uring_destroy,
    .poll = uring_poll,
    .read = uring_read,
    .write = uring_write,
    .fdatasync = uring_fdatasync,
    .cancel = uring_cancel,
    .flush = uring_flush,
    .wait = uring_wait,
};

/* ---- setup ------------------------------------------------------------------------- */

/* Tries the most efficient ring setup first and drops the flags an older kernel refuses,
 * as fio does: DEFER_TASKRUN (6.1) needs SINGLE_ISSUER (6.0); COOP_TASKRUN is 5.19. */
static int uring_init(struct io_uring *ring, unsigned entries)
{
        static const unsigned flag_sets[] = {
            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
            IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
            0,
        };
        int ret = -EINVAL;
        for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
                struct io_uring_params p;
                memset(&p, 0, sizeof p);
                p.flags = flag_sets[i];
                ret = io_uring_queue_init_params(entries, ring, &p);
                if (ret != -EINVAL)
                        break;
        }
        return ret;
}

/* The operations quire submits; a kernel that lacks one gets the epoll backend. */
static const char *uring_missing_op(struct io_uring *ring)
{
        static const struct {
                int op;
                const char *name;
        } needed[] = {
            {IORING_OP_POLL_ADD, "POLL_ADD"},
            {IORING_OP_READ, "READ"},
            {IORING_OP_WRITE, "WRITE"},
            {IORING_OP_FSYNC, "FSYNC"},
            {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL"},
        };
        struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
        if (!probe)
                return "REGISTER_PROBE";
        const char *missing = NULL;
        for (size_t i = 0; i < sizeof needed / sizeof needed[0] && !missing; i++)
                if (!io_uring_opcode_supported(probe, needed[i].op))
                        missing = needed[i].name;
        io_uring_free_probe(probe);
        return missing;
}

/* Why a setup error means "no io_uring here" rather than a failure; NULL for the latter. */
static const char *uring_refusal(int err)
{
        switch (err) {
        case -EPERM:
        case -EACCES:
                return "io_uring_setup: not permitted (seccomp profile or "
                       "kernel.io_uring_disabled)";
        case -ENOSYS:
                return "io_uring_setup: not implemented by this kernel";
        case -ENOMEM:
                return "io_uring_setup: out of locked memory (RLIMIT_MEMLOCK, kernels before 5.12)";
        default:
                return NULL;
        }
}

int loop_uring_open(struct loop **out, unsigned entries, const char **why)
{
        struct uring *u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        int ret = uring_init(&u->ring, entries);
        if (ret < 0) {
                free(u);
                *why = uring_refusal(ret);
                return ret;
        }
        const char *missing = uring_missing_op(&u->ring);
        if (missing) {
                io_uring_queue_exit(&u->ring);
                free(u);
                static __thread char reason[96];
                snprintf(reason, sizeof reason, "io_uring: this kernel lacks IORING_OP_%s",
                         missing);
                *why = reason;
                return -EOPNOTSUPP;
        }
        u->base.be = &uring_backend;
        *out = &u->base;
        return 0;
}
