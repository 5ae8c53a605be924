/* Event loop backends: io_uring (preferred) and epoll (when io_uring is refused). */
#include "quire/engine/loop.h"

#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "quire/base/util.h"

#define TAG_PTR_MASK ((UINT64_C(1) << 48) - 1)

struct loop {
        enum loop_kind kind;
        struct io_uring ring;
        int epfd;
        unsigned inflight;
        struct loop_op *timers;                        /* unsorted: a worker arms a few dozen */
        struct loop_op *deferred_head, *deferred_tail; /* completions of synchronous epoll ops */
};

static uint64_t op_tag(const struct loop_op *op)
{
        return (uint64_t)(uintptr_t)op | ((uint64_t)op->gen << 48);
}

/* The op a completion belongs to, or NULL when it was cancelled since it was submitted. */
static struct loop_op *op_of_tag(uint64_t tag)
{
        struct loop_op *op = (struct loop_op *)(uintptr_t)(tag & TAG_PTR_MASK);
        if (!op || op->gen != (uint16_t)(tag >> 48) || !op->pending)
                return NULL;
        return op;
}

static void op_start(struct loop_op *op)
{
        assert(!op->pending && !op->timer_armed);
        op->pending = true;
}

/* ---- io_uring ---------------------------------------------------------------------- */

/* Tries the most efficient ring setup first and drops the flags an older kernel refuses,
 * as fio does: DEFER_TASKRUN (6.1) needs SINGLE_ISSUER (6.0); COOP_TASKRUN is 5.19. */
static int uring_init(struct loop *l, unsigned entries)
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
                ret = io_uring_queue_init_params(entries, &l->ring, &p);
                if (ret != -EINVAL)
                        break;
        }
        return ret;
}

static struct io_uring_sqe *uring_sqe(struct loop *l)
{
        struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
        while (!sqe) {
                /* The submission queue is full: hand what is there to the kernel. */
                io_uring_submit(&l->ring);
                sqe = io_uring_get_sqe(&l->ring);
        }
        return sqe;
}

static void uring_tagged(struct loop *l, struct io_uring_sqe *sqe, struct loop_op *op)
{
        io_uring_sqe_set_data64(sqe, op_tag(op));
        l->inflight++;
}

static int uring_wait(struct loop *l, uint64_t timeout_ns)
{
        struct __kernel_timespec ts = {.tv_sec = (long long)(timeout_ns / 1000000000u),
                                       .tv_nsec = (long long)(timeout_ns % 1000000000u)};
        struct io_uring_cqe *cqe;
        int ret = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
        if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
                return ret;
        int n = 0;
        while (io_uring_peek_cqe(&l->ring, &cqe) == 0) {
                uint64_t tag = cqe->user_data;
                int res = cqe->res;
                io_uring_cqe_seen(&l->ring, cqe);
                if (!tag)
                        continue; /* a cancel request's own completion */
                l->inflight--;
                struct loop_op *op = op_of_tag(tag);
                if (!op)
                        continue;
                op->pending = false;
                op->fn(op, res);
                n++;
        }
        return n;
}

/* ---- epoll ------------------------------------------------------------------------- */

static void defer(struct loop *l, struct loop_op *op, int res)
{
        op->deferred_res = res;
        op->next = NULL;
        if (l->deferred_tail)
                l->deferred_tail->next = op;
        else
                l->deferred_head = op;
        l->deferred_tail = op;
}

static void epoll_arm(struct loop *l, struct loop_op *op, int fd, unsigned events)
{
        struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.u64 = op_tag(op)};
        /* A one-shot registration that fired stays in the set, disabled: re-enable it. */
        if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
            epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                defer(l, op, -errno);
}

static int epoll_wait_dispatch(struct loop *l, uint64_t timeout_ns)
{
        struct epoll_event evs[64];
        int ms = (int)((timeout_ns + 999999) / 1000000);
        int n = epoll_wait(l->epfd, evs, 64, ms);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        int done = 0;
        for (int i = 0; i < n; i++) {
                struct loop_op *op = op_of_tag(evs[i].data.u64);
                if (!op)
                        continue;
                op->pending = false;
                op->fn(op, (int)(evs[i].events & (POLLIN | POLLOUT | POLLERR | POLLHUP)));
                done++;
        }
        return done;
}

/* ---- common ------------------------------------------------------------------------ */

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

static const char *uring_refusal(int err)
{
        switch (err) {
        case -ENOSYS:
                return "io_uring_setup: not implemented by this kernel";
        case -ENOMEM:
                return "io_uring_setup: out of locked memory (RLIMIT_MEMLOCK, kernels before 5.12)";
        default:
                return "io_uring_setup: not permitted (seccomp profile or "
                       "kernel.io_uring_disabled)";
        }
}

int loop_new(struct loop **out, enum loop_kind want, unsigned entries, const char **why_fallback)
{
        struct loop *l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->epfd = -1;
        *why_fallback = NULL;
        if (want != LOOP_EPOLL) {
                int ret = uring_init(l, entries);
                if (ret == 0) {
                        const char *missing = uring_missing_op(&l->ring);
                        if (!missing) {
                                l->kind = LOOP_URING;
                                *out = l;
                                return 0;
                        }
                        io_uring_queue_exit(&l->ring);
                        ret = -EOPNOTSUPP;
                        static __thread char why[96];
                        snprintf(why, sizeof why, "io_uring: this kernel lacks IORING_OP_%s",
                                 missing);
                        *why_fallback = why;
                }
                bool refused = ret == -EPERM || ret == -ENOSYS || ret == -EACCES ||
                               ret == -ENOMEM || ret == -EOPNOTSUPP;
                if (want == LOOP_URING || !refused) {
                        free(l);
                        return ret;
                }
                if (!*why_fallback)
                        *why_fallback = uring_refusal(ret);
        }
        l->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (l->epfd < 0) {
                int err = -errno;
                free(l);
                return err;
        }
        l->kind = LOOP_EPOLL;
        *out = l;
        return 0;
}

void loop_free(struct loop *l)
{
        if (!l)
                return;
        if (l->kind == LOOP_URING)
                io_uring_queue_exit(&l->ring);
        else
                close(l->epfd);
        free(l);
}

enum loop_kind loop_kind(const struct loop *l)
{
        return l->kind;
}

const char *loop_kind_name(enum loop_kind k)
{
        return k == LOOP_URING ? "io_uring" : k == LOOP_EPOLL ? "epoll" : "auto";
}

unsigned loop_inflight(const struct loop *l)
{
        return l->inflight;
}

void loop_flush(struct loop *l)
{
        if (l->kind == LOOP_URING)
                io_uring_submit(&l->ring);
}

void loop_poll(struct loop *l, struct loop_op *op, int fd, unsigned events)
{
        op_start(op);
        if (l->kind == LOOP_URING) {
                struct io_uring_sqe *sqe = uring_sqe(l);
                io_uring_prep_poll_add(sqe, fd, events);
                uring_tagged(l, sqe, op);
        } else {
                epoll_arm(l, op, fd, events);
        }
}

void loop_read(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len, uint64_t off)
{
        op_start(op);
        if (l->kind == LOOP_URING) {
                struct io_uring_sqe *sqe = uring_sqe(l);
                io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
                uring_tagged(l, sqe, op);
        } else {
                ssize_t r = pread(fd, buf, len, (off_t)off);
                defer(l, op, r < 0 ? -errno : (int)r);
        }
}

void loop_write(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len,
                uint64_t off)
{
        op_start(op);
        if (l->kind == LOOP_URING) {
                struct io_uring_sqe *sqe = uring_sqe(l);
                io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
                uring_tagged(l, sqe, op);
        } else {
                ssize_t r = pwrite(fd, buf, len, (off_t)off);
                defer(l, op, r < 0 ? -errno : (int)r);
        }
}

void loop_fdatasync(struct loop *l, struct loop_op *op, int fd)
{
        op_start(op);
        if (l->kind == LOOP_URING) {
                struct io_uring_sqe *sqe = uring_sqe(l);
                io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
                uring_tagged(l, sqe, op);
        } else {
                defer(l, op, fdatasync(fd) < 0 ? -errno : 0);
        }
}

void loop_timer(struct loop *l, struct loop_op *op, uint64_t delay_ns)
{
        assert(!op->pending && !op->timer_armed);
        op->timer_armed = true;
        op->deadline_ns = now_ns() + delay_ns;
        op->next = l->timers;
        l->timers = op;
}

static void timer_unlink(struct loop *l, struct loop_op *op)
{
        for (struct loop_op **p = &l->timers; *p; p = &(*p)->next) {
                if (*p == op) {
                        *p = op->next;
                        break;
                }
        }
        op->timer_armed = false;
}

void loop_cancel(struct loop *l, struct loop_op *op)
{
        if (op->timer_armed)
                timer_unlink(l, op);
        if (!op->pending)
                return;
        if (l->kind == LOOP_URING) {
                struct io_uring_sqe *sqe = uring_sqe(l);
                io_uring_prep_cancel64(sqe, op_tag(op), 0);
                io_uring_sqe_set_data64(sqe, 0);
        } else {
                /* epoll: a registration on an fd already closed is gone; ignore the error. A
                 * deferred synchronous completion is dropped by the generation check. */
                struct loop_op *prev = NULL;
                for (struct loop_op *d = l->deferred_head; d; prev = d, d = d->next) {
                        if (d != op)
                                continue;
                        if (prev)
                                prev->next = d->next;
                        else
                                l->deferred_head = d->next;
                        if (l->deferred_tail == d)
                                l->deferred_tail = prev;
                        break;
                }
        }
        op->gen++;
        op->pending = false;
}

/* Fires every timer whose deadline has passed; returns ns until the next one (or max). */
static uint64_t fire_timers(struct loop *l, uint64_t max_ns, int *fired)
{
        uint64_t now = now_ns();
        struct loop_op *due = NULL;
        for (struct loop_op **p = &l->timers; *p;) {
                struct loop_op *op = *p;
                if (op->deadline_ns <= now) {
                        *p = op->next;
                        op->timer_armed = false;
                        op->next = due;
                        due = op;
                } else {
                        p = &op->next;
                }
        }
        while (due) {
                struct loop_op *op = due;
                due = op->next;
                op->fn(op, 0);
                (*fired)++;
        }
        uint64_t wait = max_ns;
        now = now_ns();
        for (struct loop_op *op = l->timers; op; op = op->next) {
                uint64_t left = op->deadline_ns > now ? op->deadline_ns - now : 0;
                if (left < wait)
                        wait = left;
        }
        return wait;
}

static int run_deferred(struct loop *l)
{
        int n = 0;
        struct loop_op *op = l->deferred_head;
        l->deferred_head = l->deferred_tail = NULL;
        while (op) {
                struct loop_op *next = op->next;
                op->pending = false;
                op->fn(op, op->deferred_res);
                n++;
                op = next;
        }
        return n;
}

int loop_run(struct loop *l, uint64_t timeout_ns)
{
        int n = run_deferred(l);
        uint64_t wait = fire_timers(l, timeout_ns, &n);
        if (n || l->deferred_head)
                wait = 0;
        int ret = l->kind == LOOP_URING ? uring_wait(l, wait) : epoll_wait_dispatch(l, wait);
        if (ret < 0)
                return ret;
        n += ret;
        fire_timers(l, 0, &n);
        return n;
}
