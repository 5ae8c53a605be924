/* Worker threads: each owns an event loop (io_uring or epoll) and a libcurl multi handle
 * driven by curl_multi_socket_action from that loop, and a fixed set of book slots it
 * fills from the shared queue. */
#include "quire/engine/engine.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "quire/engine/mpmc.h"
#include "quire/io/source.h"
#include "quire/base/util.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))
#define SOCKS_PER_BOOK                4

void worker_kick(struct worker *w)
{
        uint64_t one = 1;
        ssize_t r = write(w->wake_fd, &one, sizeof one);
        (void)r; /* EAGAIN means the counter is already non-zero: it is woken anyway */
}

bool slots_try_acquire(struct slots *s)
{
        int n = atomic_load(&s->free);
        while (n > 0)
                if (atomic_compare_exchange_weak(&s->free, &n, n - 1))
                        return true;
        return false;
}

static void wake_waiters(struct run *r, bool downloads)
{
        /* Pairs with the waiter's increment of waiting_* before its acquire attempt: either
         * the waiter sees the slot or we see the waiter. */
        for (unsigned i = 0; i < r->nworkers; i++) {
                struct worker *w = &r->workers[i];
                int waiting = downloads ? atomic_load(&w->waiting_dl) : atomic_load(&w->waiting_ul);
                if (waiting > 0)
                        worker_kick(w);
        }
}

void wake_download_waiters(struct run *r)
{
        wake_waiters(r, true);
}

void slots_release(struct run *r, struct slots *s)
{
        atomic_fetch_add(&s->free, 1);
        wake_waiters(r, s == &r->downloads);
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
        curl_multi_socket_action(w->multi, fd, flags, &running);
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
                s = w->free_socks;
                if (!s)
                        return -1; /* fails this transfer; it is retried */
                w->free_socks = s->next_free;
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
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
        CURLMcode mc = curl_multi_add_handle(w->multi, x->easy);
        return mc == CURLM_OK ? 0 : mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;
}

void worker_remove_xfer(struct worker *w, struct xfer *x)
{
        curl_multi_remove_handle(w->multi, x->easy);
}

/* ---- intake and lifecycle ---------------------------------------------------------- */

static void worker_refill(struct worker *w)
{
        struct run *r = w->run;
        bool took = false;
        for (unsigned i = 0; i < w->nbooks && w->busy_books < w->nbooks; i++) {
                struct book *b = &w->books[i];
                if (b->state != BOOK_IDLE || b->writes_pending || atomic_load(&b->key_inflight))
                        continue; /* a failed book's last writes or key job still own it */
                if (atomic_load(&r->aborting) || atomic_load(&r->failure_stop))
                        break;
                struct queue_item item;
                atomic_store(&w->hungry, true);
                if (!mpmc_try_pop(r->queue, &item))
                        break;
                atomic_store(&w->hungry, false);
                took = true;
                w->busy_books++;
                book_start(b, &item);
        }
        if (took) {
                uint64_t one = 1;
                ssize_t n = write(r->main_wake_fd, &one, sizeof one); /* room in the queue */
                (void)n;
        }
}

void worker_pump(struct worker *w)
{
        for (unsigned i = 0; i < w->nbooks; i++) {
                struct book *b = &w->books[i];
                if (b->key_waiting && !atomic_load(&b->key_inflight) &&
                    b->state == BOOK_DOWNLOADING)
                        source_key_ready(b);
        }
        for (unsigned i = 0; i < w->nbooks; i++)
                if (w->books[i].state == BOOK_WAIT_DOWNLOAD ||
                    w->books[i].state == BOOK_WAIT_UPLOAD)
                        book_pump(&w->books[i]);
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

static void worker_abort_all(struct worker *w)
{
        for (unsigned i = 0; i < w->nbooks; i++)
                if (w->books[i].state != BOOK_IDLE)
                        book_abort(&w->books[i]);
}

static void on_wake(struct loop_op *op, int res)
{
        struct worker *w = container_of(op, struct worker, wake_op);
        ssize_t n = read(w->wake_fd, &w->wake_buf, sizeof w->wake_buf);
        (void)n;
        loop_poll(w->loop, &w->wake_op, w->wake_fd, POLLIN);
        if (atomic_load(&w->run->aborting))
                worker_abort_all(w);
        else
                worker_pump(w);
}

static bool worker_done(struct worker *w)
{
        struct run *r = w->run;
        if (w->busy_books)
                return false;
        if (atomic_load(&r->aborting) || atomic_load(&r->failure_stop))
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
        unsigned nsocks = w->nbooks * SOCKS_PER_BOOK + 8;
        w->socks = calloc(nsocks, sizeof *w->socks);
        if (!w->socks)
                return -ENOMEM;
        for (unsigned i = 0; i < nsocks; i++) {
                w->socks[i].w = w;
                w->socks[i].op.fn = on_sock_ready;
                w->socks[i].next_free = i + 1 < nsocks ? &w->socks[i + 1] : NULL;
        }
        w->free_socks = w->socks;
        for (unsigned i = 0; i < w->nbooks; i++) {
                ret = book_init(&w->books[i], w);
                if (ret < 0)
                        return ret;
        }
        w->wake_op.fn = on_wake;
        loop_poll(w->loop, &w->wake_op, w->wake_fd, POLLIN);
        return 0;
}

static void worker_teardown(struct worker *w)
{
        /* Completions still owed by the kernel reference book buffers: collect them first. */
        while (w->loop && loop_inflight(w->loop) > 0) {
                loop_cancel(w->loop, &w->wake_op);
                if (loop_run(w->loop, 100000000u) < 0)
                        break;
        }
        /* A key pool thread may still be writing a book's key job (it skips the work
         * when the run aborts, so this is short). */
        for (unsigned i = 0; i < w->nbooks; i++)
                while (atomic_load(&w->books[i].key_inflight))
                        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        for (unsigned i = 0; i < w->nbooks; i++)
                book_destroy(&w->books[i]);
        if (w->multi)
                curl_multi_cleanup(w->multi);
        free(w->socks);
        loop_free(w->loop);
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
                bool aborted = false;
                while (!worker_done(w)) {
                        if (atomic_load(&r->aborting) && !aborted) {
                                worker_abort_all(w);
                                aborted = true;
                        }
                        int n = loop_run(w->loop, 1000000000u);
                        if (n < 0) {
                                qlog("worker %u: event loop: %s", w->id, strerror(-n));
                                w->exit_error = n;
                                break;
                        }
                }
        }
        worker_teardown(w);
        atomic_fetch_sub(&r->workers_left, 1);
        uint64_t one = 1;
        ssize_t n = write(r->main_wake_fd, &one, sizeof one);
        (void)n;
        return NULL;
}

int workers_start(struct run *r)
{
        unsigned n = r->nworkers;
        unsigned per = r->cfg.workers / n, extra = r->cfg.workers % n;
        atomic_store(&r->workers_left, n);
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
                        return -ENOMEM;
        }
        for (unsigned i = 0; i < n; i++) {
                int ret = pthread_create(&r->workers[i].thread, NULL, worker_main, &r->workers[i]);
                if (ret)
                        return -ret;
        }
        return 0;
}

void workers_join(struct run *r)
{
        for (unsigned i = 0; i < r->nworkers; i++) {
                pthread_join(r->workers[i].thread, NULL);
                close(r->workers[i].wake_fd);
                free(r->workers[i].books);
        }
}
