/* A worker's event loop: one-shot polls, file reads/writes/fsyncs and timers behind one
 * small interface, on io_uring or, where the kernel or a seccomp profile refuses it, on
 * epoll with plain syscalls (the way Redis's ae.c hides its backends).
 *
 * Every request is a struct loop_op the caller embeds in an object that outlives the
 * request (a book slot, a socket entry): the loop never allocates per request. An op has
 * at most one request in flight. Completions call op->fn(op, res) from loop_run(), never
 * from the submitting call, with res = bytes, poll revents, 0, or -errno.
 * loop_cancel() makes a pending request's completion be dropped: op->fn is not called for
 * it (a generation in the request's tag tells a late completion from a new request, as
 * QEMU's fdmon-io_uring does), and the op may be reused at once. */
#ifndef QUIRE_LOOP_H
#define QUIRE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum loop_kind { LOOP_AUTO, LOOP_URING, LOOP_EPOLL };

struct loop;
struct loop_op;
typedef void (*loop_fn)(struct loop_op *op, int res);

struct loop_op {
        loop_fn fn;
        uint16_t gen;     /* bumped by cancel; tags the in-flight request */
        bool pending;     /* a request is in flight */
        bool timer_armed; /* on the loop's timer list */
        uint64_t deadline_ns;
        struct loop_op *next; /* timer list / deferred completions */
        int deferred_res;
};

/* Creates a loop for the calling thread (io_uring rings are SINGLE_ISSUER). With
 * LOOP_AUTO, tries io_uring and falls back to epoll when it is refused; *why_fallback is
 * set to the reason (e.g. "io_uring_setup: Operation not permitted") or NULL. */
int loop_new(struct loop **out, enum loop_kind want, unsigned entries, const char **why_fallback);
void loop_free(struct loop *l);
enum loop_kind loop_kind(const struct loop *l);
const char *loop_kind_name(enum loop_kind k);

/* One-shot, level-triggered poll for POLLIN/POLLOUT on fd; res = revents or -errno. */
void loop_poll(struct loop *l, struct loop_op *op, int fd, unsigned events);
void loop_read(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len, uint64_t off);
void loop_write(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len,
                uint64_t off);
void loop_fdatasync(struct loop *l, struct loop_op *op, int fd);
/* One-shot timer: op->fn(op, 0) after delay_ns (0 = at the next turn of the loop). */
void loop_timer(struct loop *l, struct loop_op *op, uint64_t delay_ns);
/* Drops whatever op has in flight (poll, I/O or timer). For file I/O already started the
 * kernel may still complete it; the buffer must stay valid until loop_quiesce(). */
void loop_cancel(struct loop *l, struct loop_op *op);
/* Hands queued requests to the kernel now. Call before closing an fd that queued
 * requests name: io_uring resolves the fd when the request is submitted. */
void loop_flush(struct loop *l);
/* Waits up to timeout_ns (or until the next timer) for completions and dispatches them.
 * Returns the number dispatched, or -errno. */
int loop_run(struct loop *l, uint64_t timeout_ns);
/* Number of requests submitted and not yet completed by the kernel (including cancelled
 * ones whose completion has not arrived): must be 0 before buffers are freed. */
unsigned loop_inflight(const struct loop *l);

#endif
