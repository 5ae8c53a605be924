/* The event loop's common part: requests' generations and dispatch, timers, completions
 * queued for the next turn, and cross-thread wake-ups. The kernel side is a backend's
 * (loop_uring.c, loop_epoll.c), chosen in loop_new().
 *
 * Callbacks may arm, cancel and re-arm anything, so no walk here ever holds a list node
 * across a callback: timers are popped one at a time from the live list (Redis's
 * processTimeEvents re-reads its list for the same reason), and a batch of queued
 * completions or wake-ups is moved onto a list head of its own, from which loop_cancel()
 * and loop_async_close() still unlink in O(1) because every list is doubly linked around
 * a head. */
#include "loop_backend.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "quire/base/util.h"

_Static_assert(offsetof(struct loop, wake_op) == 0, "on_wake casts its op to the loop");
_Static_assert(offsetof(struct loop_async, link) == 0, "run_asyncs casts a link to its handle");

/* ---- lists: circular, doubly linked around a head op that is never a request ---------- */

static void list_init(struct loop_op *head)
{
        head->next = head->prev = head;
}

static bool list_empty(const struct loop_op *head)
{
        return head->next == head;
}

static void list_unlink(struct loop_op *op)
{
        op->prev->next = op->next;
        op->next->prev = op->prev;
        op->next = op->prev = NULL;
}

static void list_insert_before(struct loop_op *at, struct loop_op *op)
{
        op->prev = at->prev;
        op->next = at;
        at->prev->next = op;
        at->prev = op;
}

/* Moves every node of from onto the empty list to. */
static void list_move_all(struct loop_op *from, struct loop_op *to)
{
        list_init(to);
        if (list_empty(from))
                return;
        to->next = from->next;
        to->prev = from->prev;
        to->next->prev = to;
        to->prev->next = to;
        list_init(from);
}

/* ---- requests ------------------------------------------------------------------------ */

static void op_start(struct loop_op *op)
{
        assert(!op->pending && !op->timer_armed);
        op->pending = true;
}

void loop_poll(struct loop *l, struct loop_op *op, int fd, unsigned events)
{
        op_start(op);
        l->be->poll(l, op, fd, events);
}

void loop_read(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len, uint64_t off)
{
        op_start(op);
        l->be->read(l, op, fd, buf, len, off);
}

void loop_write(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len,
                uint64_t off)
{
        op_start(op);
        l->be->write(l, op, fd, buf, len, off);
}

void loop_fdatasync(struct loop *l, struct loop_op *op, int fd)
{
        op_start(op);
        l->be->fdatasync(l, op, fd);
}

void loop_complete_later(struct loop *l, struct loop_op *op, int res)
{
        assert(op->pending && !op->ready);
        op->ready = true;
        op->res = res;
        list_insert_before(&l->ready, op);
}

void loop_fail(struct loop *l, int err)
{
        if (!l->error)
                l->error = err;
}

void loop_cancel(struct loop *l, struct loop_op *op)
{
        if (op->timer_armed) {
                list_unlink(op);
                op->timer_armed = false;
                return;
        }
        if (!op->pending)
                return;
        if (op->ready) {
                list_unlink(op);
                op->ready = false;
        } else {
                l->be->cancel(l, op);
        }
        op->gen++;
        op->pending = false;
}

void loop_flush(struct loop *l)
{
        l->be->flush(l);
}

unsigned loop_inflight(const struct loop *l)
{
        return l->inflight;
}

/* Completions queued before this turn; those queued by their callbacks (an epoll write
 * issuing the next one) wait for the next turn, so polls and timers run in between. */
static int run_ready(struct loop *l)
{
        struct loop_op batch;
        list_move_all(&l->ready, &batch);
        int n = 0;
        while (!list_empty(&batch)) {
                struct loop_op *op = batch.next;
                list_unlink(op);
                op->ready = false;
                loop_complete(op, op->res);
                n++;
        }
        return n;
}

/* ---- timers: a list sorted by deadline. A worker arms a few dozen (books' backoff,
 * libcurl's one timer, a deferred pump), so an insertion walk is short, while the next
 * deadline, a cancel and a firing are O(1); the common insertion (a short delay: libcurl,
 * the pump) stops near the head. ------------------------------------------------------ */

void loop_timer(struct loop *l, struct loop_op *op, uint64_t delay_ns)
{
        assert(!op->pending && !op->timer_armed);
        uint64_t now = util_now_ns();
        uint64_t deadline = delay_ns > UINT64_MAX - now ? UINT64_MAX : now + delay_ns;
        /* Armed from a timer's callback: due after this pass, so a timer re-arming itself
         * at 0 cannot keep the pass going. */
        if (deadline <= l->firing_now)
                deadline = l->firing_now + 1;
        op->deadline_ns = deadline;
        op->timer_armed = true;
        struct loop_op *at = l->timers.next;
        while (at != &l->timers && at->deadline_ns <= deadline)
                at = at->next;
        list_insert_before(at, op);
}

static int fire_timers(struct loop *l)
{
        int fired = 0;
        l->firing_now = util_now_ns();
        while (!list_empty(&l->timers) && l->timers.next->deadline_ns <= l->firing_now) {
                struct loop_op *op = l->timers.next;
                list_unlink(op);
                op->timer_armed = false;
                op->fn(op, 0);
                fired++;
        }
        l->firing_now = 0;
        return fired;
}

static uint64_t until_next_timer(const struct loop *l, uint64_t max_ns)
{
        if (list_empty(&l->timers))
                return max_ns;
        uint64_t now = util_now_ns(), deadline = l->timers.next->deadline_ns;
        uint64_t left = deadline > now ? deadline - now : 0;
        return left < max_ns ? left : max_ns;
}

/* ---- cross-thread wake-ups ----------------------------------------------------------- */

void loop_async_init(struct loop *l, struct loop_async *a, loop_async_fn fn)
{
        a->fn = fn;
        a->loop = l;
        atomic_store(&a->pending, false);
        list_insert_before(&l->asyncs, &a->link);
}

void loop_async_send(struct loop_async *a)
{
        /* The exchange (not a plain load first) is what publishes the sender's writes to
         * the fn that clears it: a send that finds the flag set is covered by that call. */
        if (atomic_exchange(&a->pending, true))
                return;
        uint64_t one = 1;
        ssize_t n = write(a->loop->wake_fd, &one, sizeof one);
        /* EAGAIN only when the counter is saturated: the loop wakes anyway. */
        assert(n == (ssize_t)sizeof one || errno == EAGAIN);
        (void)n;
}

void loop_async_close(struct loop_async *a)
{
        list_unlink(&a->link);
}

static int run_asyncs(struct loop *l)
{
        struct loop_op batch;
        list_move_all(&l->asyncs, &batch);
        int n = 0;
        while (!list_empty(&batch)) {
                struct loop_async *a = (struct loop_async *)batch.next;
                list_unlink(&a->link);
                list_insert_before(&l->asyncs, &a->link);
                if (atomic_exchange(&a->pending, false)) {
                        a->fn(a);
                        n++;
                }
        }
        return n;
}

static void on_wake(struct loop_op *op, int res)
{
        struct loop *l = (struct loop *)op;
        if (res < 0)
                return; /* the ring failed: loop_run() says so */
        /* Drained before the flags are read: a send after this read writes again. */
        ssize_t n = read(l->wake_fd, &l->wake_count, sizeof l->wake_count);
        assert(n == (ssize_t)sizeof l->wake_count || errno == EAGAIN);
        (void)n;
        loop_poll(l, &l->wake_op, l->wake_fd, POLLIN);
        run_asyncs(l);
}

/* ---- the loop ---------------------------------------------------------------------- */

static int loop_start(struct loop *l)
{
        list_init(&l->timers);
        list_init(&l->ready);
        list_init(&l->asyncs);
        l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (l->wake_fd < 0)
                return -errno;
        l->wake_op.fn = on_wake;
        loop_poll(l, &l->wake_op, l->wake_fd, POLLIN);
        return 0;
}

int loop_new(struct loop **out, enum loop_kind want, unsigned entries, const char **why_fallback)
{
        struct loop *l = NULL;
        *why_fallback = NULL;
        if (want != LOOP_EPOLL) {
                int ret = loop_uring_open(&l, entries, why_fallback);
                /* Only a refusal (a reason given) falls back, and only when allowed. */
                if (ret < 0 && (want == LOOP_URING || !*why_fallback))
                        return ret;
        }
        if (!l) {
                int ret = loop_epoll_open(&l);
                if (ret < 0)
                        return ret;
        }
        int ret = loop_start(l);
        if (ret < 0) {
                l->be->destroy(l);
                return ret;
        }
        *out = l;
        return 0;
}

void loop_free(struct loop *l)
{
        if (!l)
                return;
        int wake_fd = l->wake_fd;
        l->be->destroy(l);
        close(wake_fd);
}

enum loop_kind loop_kind(const struct loop *l)
{
        return l->be->kind;
}

const char *loop_kind_name(enum loop_kind k)
{
        return k == LOOP_URING ? "io_uring" : k == LOOP_EPOLL ? "epoll" : "auto";
}

int loop_run(struct loop *l, uint64_t timeout_ns)
{
        assert(!l->running);
        l->running = true;
        int n = run_ready(l);
        n += fire_timers(l);
        uint64_t wait = n || !list_empty(&l->ready) ? 0 : until_next_timer(l, timeout_ns);
        /* A failed ring is not waited on; what it refused has completed above. */
        int ret = l->error ? l->error : l->be->wait(l, wait);
        if (ret >= 0) {
                n += ret;
                n += fire_timers(l);
        }
        l->running = false;
        if (ret < 0)
                return ret;
        return l->error ? l->error : n;
}
