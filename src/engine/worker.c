/* Worker threads: each owns an event loop (io_uring or epoll) and a libcurl multi handle
 * driven by curl_multi_socket_action from that loop, and a fixed set of book slots it
 * fills from the shared queue. */
#include "worker_int.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "book.h"
#include "quire/base/util.h"
#include "quire/engine/mpmc.h"
#include "run_int.h"

/* One-shot poll entry for a socket libcurl asked us to watch. Entries are made on demand
 * and kept for reuse: libcurl's own limits bound how many sockets it opens at once, and a
 * refused socket would fail every transfer of the multi handle. */
struct sock {
        struct loop_op op;
        struct worker *w;
        curl_socket_t fd;
        unsigned events;
        struct sock *next_free, *next_all;
};

void worker_kick(struct worker *w)
{
        uint64_t one = 1;
        /* EAGAIN: the counter is already non-zero, the worker is woken anyway. */
        if (write(w->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
                qlog("worker %u: wake-up: %s", w->id, strerror(errno));
}

struct loop *worker_loop(struct worker *w)
{
        return w->loop;
}

bool worker_aborting(const struct worker *w)
{
        return atomic_load(&w->run->aborting);
}

void worker_hold(struct worker *w)
{
        w->holds++;
}

void worker_release(struct worker *w)
{
        w->holds--;
}

/* ---- libcurl glue ------------------------------------------------------------------ */

static void process_curl_done(struct worker *w)
{
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(w->multi, &left))) {
                if (msg->msg != CURLMSG_DONE)
                        continue;
                struct xfer *x;
                CURLcode rc = msg->data.result;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
                curl_multi_remove_handle(w->multi, msg->easy_handle);
                x->done(x, rc);
        }
}

static void socket_action(struct worker *w, curl_socket_t fd, int flags)
{
        int running;
        CURLMcode mc = curl_multi_socket_action(w->multi, fd, flags, &running);
        if (mc != CURLM_OK)
                qlog("worker %u: curl_multi_socket_action: %s", w->id, curl_multi_strerror(mc));
        process_curl_done(w);
}

static void on_sock_ready(struct loop_op *op, int res)
{
        struct sock *s = container_of(op, struct sock, op);
        struct worker *w = s->w;
        int flags = 0;
        if (res < 0 || (res & (POLLERR | POLLHUP)))
                flags |= CURL_CSELECT_ERR;
        if (res > 0 && (res & POLLIN))
                flags |= CURL_CSELECT_IN;
        if (res > 0 && (res & POLLOUT))
                flags |= CURL_CSELECT_OUT;
        /* Re-arm first (one-shot, level-triggered): libcurl only calls the socket callback
         * when what it wants changes, and that callback replaces or removes this poll. */
        loop_poll(w->loop, &s->op, s->fd, s->events);
        socket_action(w, s->fd, flags);
}

static struct sock *sock_get(struct worker *w)
{
        struct sock *s = w->free_socks;
        if (s) {
                w->free_socks = s->next_free;
                return s;
        }
        s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->w = w;
        s->op.fn = on_sock_ready;
        s->next_all = w->socks;
        w->socks = s;
        return s;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
        struct worker *w = userp;
        struct sock *s = socketp;
        if (what == CURL_POLL_REMOVE) {
                /* May name a socket we never saw, or one libcurl already closed. */
                if (s) {
                        loop_cancel(w->loop, &s->op);
                        curl_multi_assign(w->multi, fd, NULL);
                        s->next_free = w->free_socks;
                        w->free_socks = s;
                }
                return 0;
        }
        if (!s) {
                s = sock_get(w);
                if (!s)
                        return -1; /* out of memory: libcurl fails the transfers */
                s->fd = fd;
                curl_multi_assign(w->multi, fd, s);
        }
        unsigned events = (what & CURL_POLL_IN ? POLLIN : 0) | (what & CURL_POLL_OUT ? POLLOUT : 0);
        if (s->op.pending && s->events == events)
                return 0;
        loop_cancel(w->loop, &s->op);
        s->events = events;
        loop_poll(w->loop, &s->op, fd, events);
        return 0;
}

static void on_curl_timer_fired(struct loop_op *op, int res)
{
        struct worker *w = container_of(op, struct worker, curl_timer);
        socket_action(w, CURL_SOCKET_TIMEOUT, 0);
}

/* libcurl forbids calling it back from here: only (re)arm the single timer. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
        struct worker *w = userp;
        loop_cancel(w->loop, &w->curl_timer);
        if (timeout_ms >= 0)
                loop_timer(w->loop, &w->curl_timer, (uint64_t)timeout_ms * 1000000u);
        return 0;
}

int worker_add_xfer(struct worker *w, struct xfer *x)
{
        if (!w->multi)
                return -ESHUTDOWN;
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
        CURLMcode mc = curl_multi_add_handle(w->multi, x->easy);
        if (mc == CURLM_OK)
                return 0;
        qlog("worker %u: curl_multi_add_handle: %s", w->id, curl_multi_strerror(mc));
        return mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

void worker_remove_xfer(struct worker *w, struct xfer *x)
{
        if (w->multi) /* gone at teardown, with every transfer */
                curl_multi_remove_handle(w->multi, x->easy);
}

/* ---- intake and lifecycle ---------------------------------------------------------- */

static bool intake_stopped(const struct run *r)
{
        return atomic_load(&r->aborting) || atomic_load(&r->failure_stop);
}

static void worker_refill(struct worker *w)
{
        struct run *r = w->run;
        bool took = false;
        for (unsigned i = 0; i < w->nbooks && w->busy_books < w->nbooks; i++) {
                struct book *b = w->books[i];
                if (!book_idle(b))
                        continue;
                if (intake_stopped(r))
                        break;
                struct queue_item item;
                /* Say so before looking, fenced against the pop's loads: the main thread
                 * pushes, fences and then reads the flag, so either this pop sees its item
                 * or it sees the flag and kicks us. */
                atomic_store(&w->hungry, true);
                atomic_thread_fence(memory_order_seq_cst);
                if (!mpmc_try_pop(r->queue, &item))
                        break;
                atomic_store(&w->hungry, false);
                took = true;
                w->busy_books++;
                book_start(b, &item);
        }
        if (took)
                run_wake_main(r); /* room in the queue */
}

static void worker_pump(struct worker *w)
{
        for (unsigned i = 0; i < w->nbooks; i++)
                book_pump(w->books[i]);
        worker_refill(w);
}

static void on_pump(struct loop_op *op, int res)
{
        worker_pump(container_of(op, struct worker, pump_op));
}

void worker_pump_soon(struct worker *w)
{
        if (!w->pump_op.timer_armed)
                loop_timer(w->loop, &w->pump_op, 0);
}

void worker_book_ended(struct worker *w)
{
        w->busy_books--;
        worker_pump_soon(w);
        run_wake_main(w->run);
}

static void worker_abort_all(struct worker *w)
{
        w->aborted = true;
        for (unsigned i = 0; i < w->nbooks; i++)
                book_abort(w->books[i]);
}

static void take_keys(struct worker *w)
{
        struct key_req *req = keypool_take_done(&w->key_done);
        while (req) {
                struct key_req *next = req->next_done;
                book_key_done(req);
                req = next;
        }
}

static void on_wake(struct loop_op *op, int res)
{
        struct worker *w = container_of(op, struct worker, wake_op);
        if (read(w->wake_fd, &w->wake_buf, sizeof w->wake_buf) < 0 && errno != EAGAIN)
                qlog("worker %u: wake-up: %s", w->id, strerror(errno));
        loop_poll(w->loop, &w->wake_op, w->wake_fd, POLLIN);
        take_keys(w);
        if (atomic_load(&w->run->aborting)) {
                if (!w->aborted)
                        worker_abort_all(w);
        } else {
                worker_pump(w);
        }
}

static void wake_from_pool(void *arg)
{
        worker_kick(arg);
}

static bool worker_done(struct worker *w)
{
        struct run *r = w->run;
        if (atomic_load(&r->aborting) && w->holds && util_now_ns() >= r->abort_deadline_ns)
                return !w->busy_books && !w->keys_out;
        if (w->busy_books || w->keys_out || w->holds)
                return false;
        if (intake_stopped(r))
                return true;
        return atomic_load(&r->intake_closed) && mpmc_size(r->queue) == 0;
}

static int worker_setup(struct worker *w)
{
        struct run *r = w->run;
        const char *why = NULL;
        int ret = loop_new(&w->loop, r->cfg.io, 256, &why);
        if (ret < 0) {
                qlog("worker %u: cannot create its %s loop: %s", w->id, loop_kind_name(r->cfg.io),
                     strerror(-ret));
                return ret;
        }
        if (why && w->id == 0)
                qlog("notice: %s; falling back to epoll", why);
        if (w->id == 0)
                qlog("%u worker threads on %s; %u books in flight, %u downloads, %u uploads",
                     r->nworkers, loop_kind_name(loop_kind(w->loop)), r->cfg.workers,
                     r->cfg.downloads, r->cfg.uploads);
        w->multi = curl_multi_init();
        if (!w->multi)
                return -ENOMEM;
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
        curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
        curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
        w->curl_timer.fn = on_curl_timer_fired;
        w->pump_op.fn = on_pump;
        w->key_done.wake = wake_from_pool;
        w->key_done.wake_arg = w;
        for (unsigned i = 0; i < w->nbooks; i++) {
                ret = book_new(&w->books[i], w);
                if (ret < 0) {
                        qlog("worker %u: cannot set up its book slots: %s", w->id, strerror(-ret));
                        return ret;
                }
        }
        w->wake_op.fn = on_wake;
        loop_poll(w->loop, &w->wake_op, w->wake_fd, POLLIN);
        return 0;
}

static void worker_teardown(struct worker *w)
{
        if (w->loop) {
                loop_cancel(w->loop, &w->wake_op);
                loop_cancel(w->loop, &w->curl_timer);
                loop_cancel(w->loop, &w->pump_op);
        }
        /* Transfers still running (cleanups past the abort deadline) end here; libcurl
         * removes its sockets, cancelling their polls. */
        if (w->multi)
                curl_multi_cleanup(w->multi);
        w->multi = NULL;
        /* Completions still owed by the kernel reference book buffers, and key jobs the
         * pool still holds reference book slots: collect them first (the pool skips the
         * work when the run aborts, so this is short). */
        while (w->loop && (loop_inflight(w->loop) > 0 || w->keys_out)) {
                if (loop_run(w->loop, 10000000u) < 0)
                        break;
                take_keys(w);
        }
        for (unsigned i = 0; i < w->nbooks; i++)
                book_free(w->books[i]);
        while (w->socks) {
                struct sock *next = w->socks->next_all;
                free(w->socks);
                w->socks = next;
        }
        loop_free(w->loop);
        w->loop = NULL;
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        struct run *r = w->run;
        if (w->cpu >= 0) {
                cpu_set_t set;
                CPU_ZERO(&set);
                CPU_SET(w->cpu, &set);
                pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        }
        w->exit_error = worker_setup(w);
        if (w->exit_error == 0) {
                worker_pump(w);
                while (!worker_done(w)) {
                        if (atomic_load(&r->aborting) && !w->aborted)
                                worker_abort_all(w);
                        /* The timeout re-pumps: a lost wake-up costs at most this long. */
                        int n = loop_run(w->loop, 1000000000u);
                        if (n < 0) {
                                qlog("worker %u: event loop: %s", w->id, strerror(-n));
                                w->exit_error = n;
                                break;
                        }
                        if (n == 0 && !atomic_load(&r->aborting))
                                worker_pump(w);
                }
        }
        worker_teardown(w);
        atomic_fetch_sub(&r->workers_left, 1);
        run_wake_main(r);
        return NULL;
}

int workers_start(struct run *r)
{
        unsigned n = r->nworkers;
        unsigned per = r->cfg.workers / n, extra = r->cfg.workers % n;
        r->workers = calloc(n, sizeof *r->workers);
        if (!r->workers)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                struct worker *w = &r->workers[i];
                w->run = r;
                w->id = i;
                w->cpu = r->cfg.ncpus ? r->cfg.cpus[i % r->cfg.ncpus] : -1;
                w->nbooks = per + (i < extra);
                if (w->nbooks == 0)
                        w->nbooks = 1;
                w->books = calloc(w->nbooks, sizeof *w->books);
                w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                if (!w->books || w->wake_fd < 0)
                        return w->books ? -errno : -ENOMEM;
        }
        atomic_store(&r->workers_left, n);
        for (unsigned i = 0; i < n; i++) {
                int ret = pthread_create(&r->workers[i].thread, NULL, worker_main, &r->workers[i]);
                if (ret) {
                        atomic_store(&r->workers_left, i);
                        r->nworkers = i;
                        return -ret;
                }
        }
        return 0;
}

void workers_join(struct run *r)
{
        for (unsigned i = 0; i < r->nworkers; i++)
                pthread_join(r->workers[i].thread, NULL);
}

void workers_free(struct run *r)
{
        if (!r->workers)
                return;
        for (unsigned i = 0; i < r->nworkers; i++) {
                if (r->workers[i].wake_fd > 0)
                        close(r->workers[i].wake_fd);
                free(r->workers[i].books);
        }
        free(r->workers);
        r->workers = NULL;
}

void workers_kick_all(struct run *r)
{
        for (unsigned i = 0; i < r->nworkers; i++)
                worker_kick(&r->workers[i]);
}

void workers_kick_hungry(struct run *r)
{
        atomic_thread_fence(memory_order_seq_cst); /* pairs with worker_refill's */
        for (unsigned i = 0; i < r->nworkers; i++)
                if (atomic_exchange(&r->workers[i].hungry, false))
                        worker_kick(&r->workers[i]);
}

unsigned workers_busy_books(const struct run *r)
{
        unsigned n = 0;
        for (unsigned i = 0; i < r->nworkers; i++)
                n += r->workers[i].busy_books;
        return n;
}
