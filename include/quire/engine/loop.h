/* A worker's event loop: one-shot polls, file reads/writes/fsyncs, timers and cross-thread
 * wake-ups behind one small interface, on io_uring or, where the kernel or a seccomp
 * profile refuses it, on epoll with plain syscalls (two backends behind one ops table, the
 * way Redis's ae.c hides ae_epoll.c; chosen at run time because of the fallback).
 *
 * Every request is a struct loop_op the caller embeds in an object that outlives the
 * request (a book slot, a socket entry): the loop never allocates per request. An op has
 * at most one request (I/O or timer) in flight. Completions call op->fn(op, res) from
 * loop_run(), never from the submitting call, with res = bytes, poll revents, 0, or
 * -errno. Inside a callback anything may be armed, cancelled or re-armed, including the
 * op being completed and the one due next.
 *
 * loop_cancel() makes a pending request's completion be dropped: op->fn is not called for
 * it (a generation in the request's tag tells a late completion from a new request, as
 * QEMU's fdmon-io_uring does), and the op may be reused at once. The kernel may still hold
 * the cancelled request for a while: the op's memory (and a read or write's buffer) must
 * stay valid until loop_inflight() is 0 or loop_free(). */
#ifndef QUIRE_LOOP_H
#define QUIRE_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum loop_kind { LOOP_AUTO, LOOP_URING, LOOP_EPOLL };

struct loop;
struct loop_op;
typedef void (*loop_fn)(struct loop_op *op, int res);

struct loop_op {
        loop_fn fn;
        bool pending;     /* a request is in flight (callers may read this and timer_armed) */
        bool timer_armed; /* on the loop's timer list */
        /* The loop's own: */
        bool ready;   /* its completion is known and waits for the next turn */
        uint16_t gen; /* bumped by cancel; tags the in-flight request */
        int res;      /* the completion waiting on the ready list */
        uint64_t deadline_ns;
        struct loop_op *next, *prev; /* timer list (by deadline) or ready list */
};

/* Creates a loop for the calling thread (io_uring rings are SINGLE_ISSUER). With
 * LOOP_AUTO, tries io_uring and falls back to epoll when it is refused or lacks an opcode
 * quire needs; *why_fallback is set to the reason (e.g. "io_uring_setup: not permitted
 * ...") or NULL; with LOOP_URING a refusal is returned (-EPERM, -EOPNOTSUPP, ...) and
 * *why_fallback says why. entries sizes the ring's submission queue. */
int loop_new(struct loop **out, enum loop_kind want, unsigned entries, const char **why_fallback);
void loop_free(struct loop *l);
enum loop_kind loop_kind(const struct loop *l);
const char *loop_kind_name(enum loop_kind k);

/* One-shot, level-triggered poll for POLLIN/POLLOUT on fd; res = revents or -errno. One
 * poll per fd at a time (epoll holds one registration per fd). */
void loop_poll(struct loop *l, struct loop_op *op, int fd, unsigned events);
void loop_read(struct loop *l, struct loop_op *op, int fd, void *buf, size_t len, uint64_t off);
void loop_write(struct loop *l, struct loop_op *op, int fd, const void *buf, size_t len,
                uint64_t off);
void loop_fdatasync(struct loop *l, struct loop_op *op, int fd);
/* One-shot timer: op->fn(op, 0) after delay_ns. 0 means at the next turn: a timer armed
 * by a timer's callback never fires in the same pass, so one re-arming itself at 0 lets
 * the loop's I/O run between its firings. Timers due together fire in deadline order. */
void loop_timer(struct loop *l, struct loop_op *op, uint64_t delay_ns);
/* Drops whatever op has in flight (poll, I/O, timer, or a completion already queued for
 * the next turn); nothing when it has none. For file I/O already started the kernel may
 * still complete it: the buffer must stay valid until loop_inflight() is 0. */
void loop_cancel(struct loop *l, struct loop_op *op);
/* Hands queued requests to the kernel now. Call before closing an fd that queued
 * requests name: io_uring resolves the fd when the request is submitted. */
void loop_flush(struct loop *l);
/* Waits up to timeout_ns (or until the next timer) for completions and dispatches them.
 * Returns the number dispatched, or -errno when the loop cannot go on (the ring failed:
 * requests that could not be submitted completed with that error). Not re-entrant: never
 * call it from a callback. */
int loop_run(struct loop *l, uint64_t timeout_ns);
/* Number of requests submitted and not yet completed by the kernel (including cancelled
 * ones whose completion has not arrived): must be 0 before buffers are freed. The loop's
 * own wake-up poll is not counted. */
unsigned loop_inflight(const struct loop *l);

/* ---- cross-thread wake-ups (libuv's uv_async) ---- */

struct loop_async;
typedef void (*loop_async_fn)(struct loop_async *a);

struct loop_async {
        struct loop_op link; /* the loop's own: its place on the loop's list of handles */
        loop_async_fn fn;
        struct loop *loop;
        atomic_bool pending;
};

/* Registers a on l; on l's thread. fn(a) then runs on l's thread, from loop_run(), at a
 * turn following loop_async_send(a). */
void loop_async_init(struct loop *l, struct loop_async *a, loop_async_fn fn);
/* From any thread, lock-free; never blocks. Sends that come before fn runs coalesce into
 * one call; whatever the sender wrote before the send is visible to that call of fn, and
 * a send made while fn runs gets another call. */
void loop_async_send(struct loop_async *a);
/* Unregisters a; on l's thread (a callback may close any handle, itself included). fn is
 * not called after this returns.
 * Lifetime: the wake-up eventfd belongs to the loop and stays open until loop_free(), so a
 * send racing with or following loop_async_close() is harmless. What the owner must ensure
 * is that every loop_async_send(a) has returned (the sending thread joined, or told to stop
 * through something that orders it, e.g. a mutex) before a's memory is freed or
 * loop_free(l) is called. */
void loop_async_close(struct loop_async *a);

#endif
