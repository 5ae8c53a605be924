/* The event loop on both backends: timers in order and never early, cancel and re-arm from
 * inside callbacks (the next due timer, itself at 0, an I/O op), completions queued for the
 * next turn cancelled and re-issued, polls on pipes, file reads, writes and syncs, the
 * in-flight count after a cancel, a ring too small for the requests of one turn, and
 * wake-ups from other threads (also under TSan: `make tsan`). Every test runs once per
 * backend; io_uring's are skipped, and say so, where the kernel refuses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quire/engine/loop.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quire/base/util.h"

#define MS         1000000u
#define GIVE_UP_NS (10ull * 1000 * MS)
#define HOUR_NS    (3600ull * 1000 * MS)
#define MAX_PROBES 64

static enum loop_kind on_uring = LOOP_URING, on_epoll = LOOP_EPOLL;

static struct loop *open_loop(void **state, unsigned entries)
{
        enum loop_kind want = *(enum loop_kind *)*state;
        struct loop *l = NULL;
        const char *why = NULL;
        int ret = loop_new(&l, want, entries, &why);
        if (ret < 0 && want == LOOP_URING) {
                print_message("io_uring refused here (%s%s%s): io_uring case skipped\n",
                              strerror(-ret), why ? "; " : "", why ? why : "");
                skip();
        }
        assert_int_equal(ret, 0);
        assert_int_equal(loop_kind(l), want);
        return l;
}

/* A callback's record. op comes first so a callback finds its probe by a cast. */
struct probe {
        struct loop_op op;
        struct loop *l;
        int id;
        int calls;
        int res;
        bool armed; /* the test's model: a timer armed and not cancelled */
        uint64_t due_ns;
        void (*then)(struct probe *p);
        struct probe *other;
};

static int fire_order[MAX_PROBES];
static int fired;

static void on_probe(struct loop_op *op, int res)
{
        struct probe *p = (struct probe *)op;
        p->calls++;
        p->res = res;
        if (fired < MAX_PROBES)
                fire_order[fired] = p->id;
        fired++;
        if (p->then)
                p->then(p);
}

static void probe_init(struct probe *p, struct loop *l, int id)
{
        memset(p, 0, sizeof *p);
        p->op.fn = on_probe;
        p->l = l;
        p->id = id;
}

static void arm(struct probe *p, uint64_t delay_ns)
{
        p->armed = true;
        p->due_ns = util_now_ns() + delay_ns;
        loop_timer(p->l, &p->op, delay_ns);
}

/* Turns the loop until *count reaches want; a loop that never gets there fails the test
 * (after GIVE_UP_NS) instead of hanging it. */
static void run_until(struct loop *l, const int *count, int want)
{
        uint64_t give_up = util_now_ns() + GIVE_UP_NS;
        while (*count < want) {
                assert_true(loop_run(l, 5 * MS) >= 0);
                assert_true(util_now_ns() < give_up);
        }
}

static void run_turns(struct loop *l, int turns)
{
        for (int i = 0; i < turns; i++)
                assert_true(loop_run(l, 0) >= 0);
}

static void make_pipe(int fds[2])
{
        assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void close_pipe(int fds[2])
{
        close(fds[0]);
        close(fds[1]);
}

/* ---- timers ------------------------------------------------------------------------ */

static void check_not_early(struct probe *p)
{
        assert_true(util_now_ns() >= p->due_ns);
}

/* Fired in deadline order (two at one delay in the order armed), none before its deadline. */
static void test_timer_order(void **state)
{
        struct loop *l = open_loop(state, 8);
        static const unsigned delays_ms[] = {30, 10, 20, 0, 10, 5};
        static const int want[] = {3, 5, 1, 4, 2, 0};
        enum { N = sizeof delays_ms / sizeof delays_ms[0] };
        struct probe t[N];
        fired = 0;
        for (int i = 0; i < N; i++) {
                probe_init(&t[i], l, i);
                t[i].then = check_not_early;
                arm(&t[i], delays_ms[i] * MS);
        }
        run_until(l, &fired, N);
        run_turns(l, 3);
        assert_int_equal(fired, N);
        for (int i = 0; i < N; i++) {
                assert_int_equal(fire_order[i], want[i]);
                assert_int_equal(t[i].calls, 1);
                assert_false(t[i].op.timer_armed);
        }
        loop_free(l);
}

static void cancel_other(struct probe *p)
{
        loop_cancel(p->l, &p->other->op);
        p->other->armed = false;
}

/* Arms a and b due now (a first), a's callback doing `then` to b, and turns the loop
 * until a has fired: b must not have. */
static void first_due_acts_on_next(struct loop *l, struct probe *a, struct probe *b,
                                   void (*then)(struct probe *p))
{
        probe_init(a, l, 0);
        probe_init(b, l, 1);
        a->then = then;
        a->other = b;
        arm(a, 0);
        arm(b, 0);
        fired = 0;
        run_until(l, &fired, 1);
        run_turns(l, 3);
        assert_int_equal(a->calls, 1);
        assert_int_equal(b->calls, 0);
}

/* The first due timer cancels the next due one: that one never fires. */
static void test_timer_cancels_next_due(void **state)
{
        struct loop *l = open_loop(state, 8);
        struct probe a, b;
        first_due_acts_on_next(l, &a, &b, cancel_other);
        assert_false(b.op.timer_armed);
        loop_free(l);
}

static void push_other_back(struct probe *p)
{
        loop_cancel(p->l, &p->other->op);
        arm(p->other, HOUR_NS);
}

/* What libcurl's timer callback does on every curl_multi_add_handle: the first due timer
 * cancels the next due one and re-arms it far ahead. Neither it nor a timer that was never
 * due may fire now (the bug: both did, and re-arming them later tripped an assertion). */
static void test_timer_rearms_next_due_later(void **state)
{
        struct loop *l = open_loop(state, 8);
        struct probe a, b, c;
        probe_init(&c, l, 2);
        arm(&c, HOUR_NS);
        first_due_acts_on_next(l, &a, &b, push_other_back);
        assert_int_equal(c.calls, 0);
        assert_true(b.op.timer_armed);
        assert_true(c.op.timer_armed);
        /* Re-arming both again must be allowed (they are armed: cancel first). */
        loop_cancel(l, &b.op);
        loop_cancel(l, &c.op);
        arm(&b, 0);
        arm(&c, 0);
        run_until(l, &fired, 3);
        assert_int_equal(b.calls, 1);
        assert_int_equal(c.calls, 1);
        loop_free(l);
}

static int zero_rearms_left;

static void rearm_self_zero(struct probe *p)
{
        if (zero_rearms_left-- > 0)
                arm(p, 0);
}

/* A timer re-arming itself at 0 fires at most once a timer pass (two a loop_run: before
 * and after the wait) and never keeps a ready poll from being served. */
static void test_timer_rearms_itself_at_zero(void **state)
{
        struct loop *l = open_loop(state, 8);
        int fds[2];
        make_pipe(fds);
        assert_int_equal(write(fds[1], "x", 1), 1);
        struct probe t, p;
        probe_init(&t, l, 0);
        probe_init(&p, l, 1);
        t.then = rearm_self_zero;
        zero_rearms_left = 1000;
        arm(&t, 0);
        loop_poll(l, &p.op, fds[0], POLLIN);
        int turns = 0;
        uint64_t give_up = util_now_ns() + GIVE_UP_NS;
        while (t.calls <= 1000) {
                int before = t.calls;
                assert_true(loop_run(l, 5 * MS) >= 0);
                turns++;
                assert_true(t.calls - before <= 2);
                assert_true(util_now_ns() < give_up);
                if (turns == 3)
                        assert_int_equal(p.calls, 1); /* served while the timer spins */
        }
        assert_int_equal(t.calls, 1001);
        assert_false(t.op.timer_armed);
        assert_int_equal(p.calls, 1);
        assert_true(p.res & POLLIN);
        close_pipe(fds);
        loop_free(l);
}

/* The model of a storm: NT timers whose callbacks cancel and re-arm others at random
 * delays, including ones due in the same pass. No timer may fire while the model says it
 * is cancelled, none before its deadline, none twice for one arming. */
enum { NT = 32, STORM_FIRINGS = 20000 };
static struct probe storm[NT];
static unsigned storm_seed;
static int storm_firings;

static unsigned storm_rand(void)
{
        storm_seed = storm_seed * 1103515245u + 12345u;
        return storm_seed >> 16;
}

static void storm_step(struct probe *p)
{
        assert_true(p->armed); /* cancelled timers never fire */
        assert_true(util_now_ns() >= p->due_ns);
        p->armed = false;
        if (++storm_firings >= STORM_FIRINGS)
                return;
        for (int k = 0; k < 3; k++) {
                struct probe *o = &storm[storm_rand() % NT];
                if (o != p && storm_rand() % 2) {
                        loop_cancel(p->l, &o->op);
                        o->armed = false;
                }
                if (!o->armed && o != p)
                        arm(o, (storm_rand() % 4) * MS / 2);
        }
        arm(p, (storm_rand() % 3) * MS / 2);
}

static void test_timer_storm(void **state)
{
        struct loop *l = open_loop(state, 8);
        storm_seed = 7;
        storm_firings = 0;
        for (int i = 0; i < NT; i++) {
                probe_init(&storm[i], l, i);
                storm[i].then = storm_step;
                arm(&storm[i], (storm_rand() % 4) * MS / 2);
        }
        run_until(l, &storm_firings, STORM_FIRINGS);
        for (int i = 0; i < NT; i++) {
                assert_int_equal(storm[i].op.timer_armed, storm[i].armed);
                loop_cancel(l, &storm[i].op);
        }
        int before = storm_firings;
        run_turns(l, 3);
        assert_int_equal(storm_firings, before);
        loop_free(l);
}

/* ---- polls ------------------------------------------------------------------------- */

static void test_poll_pipe(void **state)
{
        struct loop *l = open_loop(state, 8);
        int fds[2];
        make_pipe(fds);
        struct probe in, out;
        probe_init(&in, l, 0);
        probe_init(&out, l, 1);

        loop_poll(l, &in.op, fds[0], POLLIN);
        assert_true(in.op.pending);
        for (int i = 0; i < 3; i++)
                assert_true(loop_run(l, 2 * MS) >= 0);
        assert_int_equal(in.calls, 0); /* nothing to read yet */

        loop_poll(l, &out.op, fds[1], POLLOUT);
        run_until(l, &out.calls, 1);
        assert_true(out.res & POLLOUT);
        assert_int_equal(in.calls, 0);

        assert_int_equal(write(fds[1], "x", 1), 1);
        run_until(l, &in.calls, 1);
        assert_true(in.res & POLLIN);
        assert_false(in.op.pending);

        /* Level-triggered: re-armed while the byte is still there, it fires again. */
        loop_poll(l, &in.op, fds[0], POLLIN);
        run_until(l, &in.calls, 2);
        char c;
        assert_int_equal(read(fds[0], &c, 1), 1);

        /* The writer gone: the reader's poll reports the hang-up. */
        close(fds[1]);
        loop_poll(l, &in.op, fds[0], POLLIN);
        run_until(l, &in.calls, 3);
        assert_true(in.res & POLLHUP);
        close(fds[0]);
        loop_free(l);
}

/* Two polls ready in the same turn: whichever runs first cancels the other, which then
 * never runs; the cancelled op is reused at once and completes once. */
static void test_cancel_poll_from_callback(void **state)
{
        struct loop *l = open_loop(state, 8);
        int a_fds[2], b_fds[2];
        make_pipe(a_fds);
        make_pipe(b_fds);
        assert_int_equal(write(a_fds[1], "a", 1), 1);
        assert_int_equal(write(b_fds[1], "b", 1), 1);
        struct probe a, b;
        probe_init(&a, l, 0);
        probe_init(&b, l, 1);
        a.then = b.then = cancel_other;
        a.other = &b;
        b.other = &a;
        loop_poll(l, &a.op, a_fds[0], POLLIN);
        loop_poll(l, &b.op, b_fds[0], POLLIN);
        fired = 0;
        run_until(l, &fired, 1);
        run_turns(l, 3);
        assert_int_equal(a.calls + b.calls, 1);
        struct probe *loser = a.calls ? &b : &a;
        assert_false(loser->op.pending);
        loser->then = NULL;
        loop_poll(l, &loser->op, loser == &a ? a_fds[0] : b_fds[0], POLLIN);
        run_until(l, &loser->calls, 1);
        run_turns(l, 3);
        assert_int_equal(a.calls, 1);
        assert_int_equal(b.calls, 1);
        close_pipe(a_fds);
        close_pipe(b_fds);
        loop_free(l);
}

/* ---- file I/O ---------------------------------------------------------------------- */

static int temp_file(void)
{
        char path[] = "/tmp/quire-test-loop-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(unlink(path), 0);
        return fd;
}

static void test_file_io(void **state)
{
        struct loop *l = open_loop(state, 8);
        int fd = temp_file();
        static const char *parts[] = {"the first ", "part, the second ", "part, the end"};
        struct probe w[3], s, r;
        uint64_t off = 0;
        for (int i = 0; i < 3; i++) {
                probe_init(&w[i], l, i);
                loop_write(l, &w[i].op, fd, parts[i], strlen(parts[i]), off);
                off += strlen(parts[i]);
        }
        fired = 0;
        run_until(l, &fired, 3);
        for (int i = 0; i < 3; i++)
                assert_int_equal(w[i].res, (int)strlen(parts[i]));
        probe_init(&s, l, 3);
        loop_fdatasync(l, &s.op, fd);
        run_until(l, &s.calls, 1);
        assert_int_equal(s.res, 0);

        char back[64] = {0};
        probe_init(&r, l, 4);
        loop_read(l, &r.op, fd, back, sizeof back, 0);
        run_until(l, &r.calls, 1);
        assert_int_equal(r.res, (int)off);
        assert_string_equal(back, "the first part, the second part, the end");
        /* At the end of the file a read returns 0; a bad fd is an error, not a crash. */
        loop_read(l, &r.op, fd, back, sizeof back, off);
        run_until(l, &r.calls, 2);
        assert_int_equal(r.res, 0);
        loop_fdatasync(l, &s.op, -1);
        run_until(l, &s.calls, 2);
        assert_int_equal(s.res, -EBADF);
        run_turns(l, 2);
        assert_int_equal(loop_inflight(l), 0);
        close(fd);
        loop_free(l);
}

/* ---- completions queued for the next turn (epoll's synchronous I/O) ---------------- */

enum { NW = 4 };
static struct probe wr[NW];
static int wr_fd, wr_cancelled;
static const char reissue[] = "re-issued";
static bool wr_reissue;

/* The first write to complete cancels the one issued after it, when that one is still
 * pending, and re-issues it with another length when asked; later ones do nothing. */
static void cancel_next_write(struct probe *p)
{
        for (int i = 0; i < NW; i++)
                wr[i].then = NULL;
        struct probe *next = &wr[(p->id + 1) % NW];
        if (!next->op.pending)
                return; /* io_uring completed it first: nothing left to cancel */
        wr_cancelled = next->id;
        loop_cancel(p->l, &next->op);
        if (wr_reissue)
                loop_write(p->l, &next->op, wr_fd, reissue, sizeof reissue, 100);
}

/* On epoll the writes ran when issued and their results wait for the next turn: a
 * cancelled one must not run, a re-issued one must run once with its new result, and the
 * ones queued after it must still run (the bug: all three went wrong). */
static void run_write_cancel(void **state, bool reissue_it)
{
        struct loop *l = open_loop(state, 8);
        wr_fd = temp_file();
        wr_reissue = reissue_it;
        wr_cancelled = -1;
        for (int i = 0; i < NW; i++) {
                probe_init(&wr[i], l, i);
                wr[i].then = cancel_next_write;
                loop_write(l, &wr[i].op, wr_fd, "abc", 3, (uint64_t)i * 3);
        }
        fired = 0;
        run_until(l, &fired, 1);
        int want = wr_cancelled >= 0 && !reissue_it ? NW - 1 : NW;
        run_until(l, &fired, want);
        run_turns(l, 5);
        assert_int_equal(fired, want);
        for (int i = 0; i < NW; i++) {
                if (i != wr_cancelled) {
                        assert_int_equal(wr[i].calls, 1);
                        assert_int_equal(wr[i].res, 3);
                } else if (reissue_it) {
                        assert_int_equal(wr[i].calls, 1);
                        assert_int_equal(wr[i].res, (int)sizeof reissue);
                } else {
                        assert_int_equal(wr[i].calls, 0);
                        assert_false(wr[i].op.pending);
                }
        }
        if (loop_kind(l) == LOOP_EPOLL)
                assert_int_equal(wr_cancelled, 1); /* queued in issue order: 1 was pending */
        assert_int_equal(loop_inflight(l), 0);
        close(wr_fd);
        loop_free(l);
}

static void test_deferred_cancelled(void **state)
{
        run_write_cancel(state, false);
}

static void test_deferred_cancelled_and_reissued(void **state)
{
        run_write_cancel(state, true);
}

/* ---- in flight --------------------------------------------------------------------- */

static void test_inflight_after_cancel(void **state)
{
        struct loop *l = open_loop(state, 8);
        run_turns(l, 1);
        assert_int_equal(loop_inflight(l), 0); /* the loop's own wake-up poll is not counted */
        int fds[2];
        make_pipe(fds);
        struct probe p;
        probe_init(&p, l, 0);
        loop_poll(l, &p.op, fds[0], POLLIN);
        loop_flush(l);
        bool uring = loop_kind(l) == LOOP_URING;
        assert_int_equal(loop_inflight(l), uring ? 1 : 0);
        loop_cancel(l, &p.op);
        assert_false(p.op.pending);
        /* The kernel still holds it until the cancellation completes. */
        assert_int_equal(loop_inflight(l), uring ? 1 : 0);
        uint64_t give_up = util_now_ns() + GIVE_UP_NS;
        while (loop_inflight(l) > 0) {
                assert_true(loop_run(l, MS) >= 0);
                assert_true(util_now_ns() < give_up);
        }
        /* Ready now, but cancelled: never reported. */
        assert_int_equal(write(fds[1], "x", 1), 1);
        run_turns(l, 3);
        assert_int_equal(p.calls, 0);
        /* The op is reused at once. */
        loop_poll(l, &p.op, fds[0], POLLIN);
        run_until(l, &p.calls, 1);
        assert_true(p.res & POLLIN);
        assert_int_equal(loop_inflight(l), 0);
        close_pipe(fds);
        loop_free(l);
}

/* ---- the kernel pushing back on submissions ---------------------------------------- */

/* This binary's io_uring_submit() stands in for liburing's (the executable's definition
 * wins over the shared library's) to answer what a kernel answers under pressure. */
static int submit_pushbacks; /* the next calls answer -EBUSY and submit nothing */
static int submit_failure;   /* when set, every call answers it */

int io_uring_submit(struct io_uring *ring)
{
        static int (*real)(struct io_uring *);
        if (!real)
                real = (int (*)(struct io_uring *))dlsym(RTLD_NEXT, "io_uring_submit");
        assert_non_null(real);
        if (submit_failure)
                return submit_failure;
        if (submit_pushbacks > 0) {
                submit_pushbacks--;
                return -EBUSY;
        }
        return real(ring);
}

/* n polls and n writes on a 4-entry ring, the first `pushbacks` submissions answered
 * EBUSY: every request completes exactly once, and never inside a submitting call. */
static void run_many(void **state, int n, int pushbacks)
{
        struct loop *l = open_loop(state, 4);
        enum { MAX = 48 };
        int fds[MAX][2];
        struct probe polls[MAX], writes[MAX];
        assert_true(n <= MAX);
        int fd = temp_file();
        submit_pushbacks = pushbacks;
        fired = 0;
        for (int i = 0; i < n; i++) {
                make_pipe(fds[i]);
                assert_int_equal(write(fds[i][1], "x", 1), 1);
                probe_init(&polls[i], l, i);
                probe_init(&writes[i], l, n + i);
                loop_poll(l, &polls[i].op, fds[i][0], POLLIN);
                loop_write(l, &writes[i].op, fd, "0123456789", 10, (uint64_t)i * 10);
                assert_int_equal(fired, 0);
        }
        assert_int_equal(submit_pushbacks, 0);
        run_until(l, &fired, 2 * n);
        run_turns(l, 3);
        assert_int_equal(fired, 2 * n);
        for (int i = 0; i < n; i++) {
                assert_int_equal(polls[i].calls, 1);
                assert_true(polls[i].res & POLLIN);
                assert_int_equal(writes[i].calls, 1);
                assert_int_equal(writes[i].res, 10);
                close_pipe(fds[i]);
        }
        assert_int_equal(loop_inflight(l), 0);
        close(fd);
        loop_free(l);
}

/* More requests in one turn than the submission queue holds (and more completions than
 * the completion queue). */
static void test_small_ring(void **state)
{
        run_many(state, 48, 0);
}

/* EBUSY from a submission with the queue full: completions are reaped (to the next turn)
 * and the submission retried. */
static void test_submit_pushed_back(void **state)
{
        run_many(state, 24, 20);
}

/* A ring the kernel refuses outright: the requests it could not take complete with the
 * error, and loop_run() reports it from then on. */
static void test_submit_fails(void **state)
{
        struct loop *l = open_loop(state, 4);
        enum { N = 8 };
        struct probe w[N];
        int fd = temp_file();
        submit_failure = -EBADF;
        for (int i = 0; i < N; i++) {
                probe_init(&w[i], l, i);
                loop_write(l, &w[i].op, fd, "0123456789", 10, (uint64_t)i * 10);
        }
        assert_int_equal(loop_run(l, MS), -EBADF);
        assert_int_equal(loop_run(l, MS), -EBADF);
        int failed = 0;
        for (int i = 0; i < N; i++) {
                if (w[i].calls) {
                        assert_int_equal(w[i].calls, 1);
                        assert_int_equal(w[i].res, -EBADF);
                        failed++;
                } else {
                        assert_true(w[i].op.pending); /* still queued in the dead ring */
                }
        }
        assert_true(failed >= N - 4); /* all that did not fit in the 4-entry queue */
        submit_failure = 0;
        close(fd);
        loop_free(l);
}

/* ---- wake-ups from other threads --------------------------------------------------- */

struct wake {
        struct loop_async a;
        int calls;
        pthread_t loop_thread;
        bool wrong_thread;
        atomic_ulong sent;
        unsigned long seen;
        struct loop_async *close_this;
        /* ping-pong */
        unsigned long plain; /* written by the sender, read by fn: ordered by the send */
        unsigned long plain_seen;
        atomic_bool ack;
};

static void on_wake(struct loop_async *a)
{
        struct wake *w = (struct wake *)a;
        w->calls++;
        if (!pthread_equal(pthread_self(), w->loop_thread))
                w->wrong_thread = true;
        w->seen = atomic_load(&w->sent);
        if (w->close_this)
                loop_async_close(w->close_this);
}

static void wake_init(struct wake *w, struct loop *l, loop_async_fn fn)
{
        memset(w, 0, sizeof *w);
        w->loop_thread = pthread_self();
        loop_async_init(l, &w->a, fn);
}

/* Sends before the loop turns coalesce into one call; a later send gets another. */
static void test_async_coalesces(void **state)
{
        struct loop *l = open_loop(state, 8);
        struct wake w;
        wake_init(&w, l, on_wake);
        for (int i = 0; i < 100; i++)
                loop_async_send(&w.a);
        run_until(l, &w.calls, 1);
        run_turns(l, 3);
        assert_int_equal(w.calls, 1);
        loop_async_send(&w.a);
        run_until(l, &w.calls, 2);
        run_turns(l, 3);
        assert_int_equal(w.calls, 2);
        assert_int_equal(loop_inflight(l), 0);
        loop_async_close(&w.a);
        loop_free(l);
}

/* A handle's fn closes another pending one (never called then) and itself; a send after
 * close is harmless. */
static void test_async_close_from_callback(void **state)
{
        struct loop *l = open_loop(state, 8);
        struct wake a, b;
        wake_init(&a, l, on_wake);
        wake_init(&b, l, on_wake);
        a.close_this = &b.a;
        b.close_this = &a.a;
        loop_async_send(&a.a);
        loop_async_send(&b.a);
        uint64_t give_up = util_now_ns() + GIVE_UP_NS;
        while (a.calls + b.calls == 0) {
                assert_true(loop_run(l, 5 * MS) >= 0);
                assert_true(util_now_ns() < give_up);
        }
        run_turns(l, 3);
        assert_int_equal(a.calls + b.calls, 1);
        struct wake *survivor = a.calls ? &a : &b;
        survivor->close_this = NULL;
        loop_async_send(&survivor->a);
        run_until(l, &survivor->calls, 2);
        loop_async_close(&survivor->a);
        loop_async_send(&survivor->a);
        run_turns(l, 3);
        assert_int_equal(survivor->calls, 2);
        loop_free(l);
}

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

enum { SENDERS = 2 };
#ifdef UNDER_SANITIZER
enum { SENDS_PER_THREAD = 20000, ROUNDS = 500 };
#else
enum { SENDS_PER_THREAD = 100000, ROUNDS = 2000 };
#endif

static void *many_sends(void *arg)
{
        struct wake *w = arg;
        for (int i = 0; i < SENDS_PER_THREAD; i++) {
                atomic_fetch_add(&w->sent, 1);
                loop_async_send(&w->a);
        }
        return NULL;
}

/* Two threads send many times: fn runs on the loop's thread, at most once a send, and
 * after the last send it sees every increment made before one (none lost). */
static void test_async_from_threads(void **state)
{
        struct loop *l = open_loop(state, 8);
        struct wake w;
        wake_init(&w, l, on_wake);
        pthread_t t[SENDERS];
        for (int i = 0; i < SENDERS; i++)
                assert_int_equal(pthread_create(&t[i], NULL, many_sends, &w), 0);
        const unsigned long total = (unsigned long)SENDERS * SENDS_PER_THREAD;
        uint64_t give_up = util_now_ns() + 6 * GIVE_UP_NS;
        while (w.seen < total) {
                assert_true(loop_run(l, 5 * MS) >= 0);
                assert_true(util_now_ns() < give_up);
        }
        for (int i = 0; i < SENDERS; i++)
                pthread_join(t[i], NULL);
        run_turns(l, 3);
        assert_false(w.wrong_thread);
        assert_true(w.calls >= 1);
        assert_true((unsigned long)w.calls <= total);
        assert_int_equal(w.seen, total);
        print_message("%lu sends from %d threads: %d calls\n", total, SENDERS, w.calls);
        loop_async_close(&w.a);
        loop_free(l);
}

static void on_ping(struct loop_async *a)
{
        struct wake *w = (struct wake *)a;
        w->calls++;
        w->plain_seen = w->plain; /* a plain read: TSan checks the send ordered it */
        atomic_store(&w->ack, true);
}

static void *ping(void *arg)
{
        struct wake *w = arg;
        for (unsigned long i = 1; i <= ROUNDS; i++) {
                w->plain = i;
                loop_async_send(&w->a);
                while (!atomic_load(&w->ack))
                        sched_yield();
                atomic_store(&w->ack, false);
        }
        return NULL;
}

/* What a sender writes before a send is what fn reads (plain memory, ordered by the send
 * alone; the ack orders the other way). */
static void test_async_publishes(void **state)
{
        struct loop *l = open_loop(state, 8);
        struct wake w;
        wake_init(&w, l, on_ping);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, ping, &w), 0);
        uint64_t give_up = util_now_ns() + 6 * GIVE_UP_NS;
        int last = 0;
        while (w.calls < ROUNDS) {
                assert_true(loop_run(l, 5 * MS) >= 0);
                if (w.calls != last) {
                        assert_int_equal(w.plain_seen, (unsigned long)w.calls);
                        last = w.calls;
                }
                assert_true(util_now_ns() < give_up);
        }
        pthread_join(t, NULL);
        assert_int_equal(w.calls, ROUNDS);
        assert_int_equal(w.plain_seen, ROUNDS);
        loop_async_close(&w.a);
        loop_free(l);
}

/* ---- creation ---------------------------------------------------------------------- */

static void test_auto_picks_a_backend(void **state)
{
        struct loop *l = NULL;
        const char *why = "unset";
        assert_int_equal(loop_new(&l, LOOP_AUTO, 8, &why), 0);
        enum loop_kind k = loop_kind(l);
        assert_true(k == LOOP_URING || k == LOOP_EPOLL);
        assert_true(k == LOOP_URING ? why == NULL : why != NULL);
        assert_string_equal(loop_kind_name(k), k == LOOP_URING ? "io_uring" : "epoll");
        loop_free(l);
}

#define ON(f, kind) ((struct CMUnitTest){#f " (" #kind ")", f, NULL, NULL, &on_##kind})
#define ON_BOTH(f)  ON(f, uring), ON(f, epoll)

int main(void)
{
        alarm(600); /* a hung loop fails instead of hanging CI */
        const struct CMUnitTest tests[] = {
            ON_BOTH(test_timer_order),
            ON_BOTH(test_timer_cancels_next_due),
            ON_BOTH(test_timer_rearms_next_due_later),
            ON_BOTH(test_timer_rearms_itself_at_zero),
            ON_BOTH(test_timer_storm),
            ON_BOTH(test_poll_pipe),
            ON_BOTH(test_cancel_poll_from_callback),
            ON_BOTH(test_file_io),
            ON_BOTH(test_deferred_cancelled),
            ON_BOTH(test_deferred_cancelled_and_reissued),
            ON_BOTH(test_inflight_after_cancel),
            ON_BOTH(test_small_ring),
            ON(test_submit_pushed_back, uring),
            ON(test_submit_fails, uring),
            ON_BOTH(test_async_coalesces),
            ON_BOTH(test_async_close_from_callback),
            ON_BOTH(test_async_from_threads),
            ON_BOTH(test_async_publishes),
            cmocka_unit_test(test_auto_picks_a_backend),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
