/* The epoll backend, for where io_uring is refused: polls are one-shot registrations
 * tagged with their op and generation; file I/O runs synchronously at submission and its
 * result waits on the ready list for the next turn, as a completion would. */
#include "loop_backend.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define EVENTS_PER_WAIT 64

struct ep {
        struct loop base; /* first: a struct loop * is a struct ep * */
        int epfd;
};

static struct ep *ep_of(struct loop *l)
{
        return (struct ep *)l;
}

static void ep_poll(struct loop *l, struct loop_op *op, int fd, unsigned events)
{
        struct ep *e = ep_of(l);
        struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.u64 = loop_tag(op)};
        /* A one-shot registration that fired stays in the set, disabled: re-enable it. */
        if (epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
            epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                loop_complete_later(l, op, -errno);
}

static void ep_read(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len, uint64_t off)
{
        ssize_t r = pread(fd, buf, len, (off_t)off);
        loop_complete_later(l, op, r < 0 ? -errno : (int)r);
}

static void ep_write(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len,
                     uint64_t off)
{
        ssize_t r = pwrite(fd, buf, len, (off_t)off);
        loop_complete_later(l, op, r < 0 ? -errno : (int)r);
}

static void ep_fdatasync(struct loop *l, struct loop_op *op, int fd)
{
        loop_complete_later(l, op, fdatasync(fd) < 0 ? -errno : 0);
}

/* A cancelled poll's registration stays (disabled once it fires, gone when its fd is
 * closed); the generation drops what it reports. Saves a syscall per cancel: libcurl
 * cancels and re-polls whenever it wants other events. */
static void ep_cancel(struct loop *l, struct loop_op *op)
{
}

static void ep_flush(struct loop *l)
{
}

static int ep_wait(struct loop *l, uint64_t timeout_ns)
{
        struct ep *e = ep_of(l);
        struct epoll_event evs[EVENTS_PER_WAIT];
        /* Rounded up: a timer due in 0.3 ms must not turn into a busy loop. */
        uint64_t ms = (timeout_ns + 999999) / 1000000;
        int n = epoll_wait(e->epfd, evs, EVENTS_PER_WAIT, ms > INT_MAX ? INT_MAX : (int)ms);
        if (n < 0)
                return errno == EINTR ? 0 : -errno;
        int done = 0;
        for (int i = 0; i < n; i++) {
                /* An earlier callback of this batch may have cancelled or re-armed it. */
                struct loop_op *op = loop_tag_live(evs[i].data.u64);
                if (!op)
                        continue;
                loop_complete(op, (int)(evs[i].events & (POLLIN | POLLOUT | POLLERR | POLLHUP)));
                done++;
        }
        return done;
}

static void ep_destroy(struct loop *l)
{
        struct ep *e = ep_of(l);
        close(e->epfd);
        free(e);
}

static const struct loop_backend ep_backend = {
    .kind = LOOP_EPOLL,
    .destroy = ep_destroy,
    .poll = ep_poll,
    .read = ep_read,
    .write = ep_write,
    .fdatasync = ep_fdatasync,
    .cancel = ep_cancel,
    .flush = ep_flush,
    .wait = ep_wait,
};

int loop_epoll_open(struct loop **out)
{
        struct ep *e = calloc(1, sizeof *e);
        if (!e)
                return -ENOMEM;
        e->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (e->epfd < 0) {
                int err = -errno;
                free(e);
                return err;
        }
        e->base.be = &ep_backend;
        *out = &e->base;
        return 0;
}
