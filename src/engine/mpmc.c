/* Vyukov's bounded MPMC queue: each cell carries a sequence number that tells a producer
 * at position p the cell is free (seq == p) and a consumer at p that it is full
 * (seq == p + 1). Claiming a position is one CAS on head or tail; the element copy is then
 * private to the claimer until it publishes the cell with a release store. */
#include "quire/engine/mpmc.h"

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CACHELINE 64

struct cell {
        atomic_size_t seq;
        /* The element follows, in the same cache-line-rounded stride. */
        alignas(max_align_t) unsigned char data[];
};

struct mpmc {
        /* Producers hammer head and consumers tail: separate lines keep them from
         * invalidating each other's cache on every operation. */
        alignas(CACHELINE) atomic_size_t head;
        alignas(CACHELINE) atomic_size_t tail;
        alignas(CACHELINE) size_t mask;
        size_t elem_size, stride;
        unsigned char *cells;
};

static struct cell *cell_at(const struct mpmc *q, size_t pos)
{
        return (struct cell *)(q->cells + (pos & q->mask) * q->stride);
}

static size_t round_up_pow2(size_t n)
{
        size_t p = 2; /* one cell cannot tell "free for p+1" from "full at p" */
        while (p < n)
                p <<= 1;
        return p;
}

struct mpmc *mpmc_new(size_t capacity, size_t elem_size)
{
        if (capacity == 0 || elem_size == 0 || capacity > SIZE_MAX / 4 ||
            elem_size > SIZE_MAX / 4) {
                errno = EINVAL;
                return NULL;
        }
        size_t cap = round_up_pow2(capacity);
        /* Whole cache lines per cell: two threads working on neighbouring cells never
         * share a line. */
        size_t stride =
            (offsetof(struct cell, data) + elem_size + CACHELINE - 1) & ~(size_t)(CACHELINE - 1);
        if (cap > SIZE_MAX / stride) {
                errno = ENOMEM;
                return NULL;
        }
        struct mpmc *q = aligned_alloc(CACHELINE, sizeof *q);
        if (!q)
                return NULL;
        memset(q, 0, sizeof *q);
        q->cells = aligned_alloc(CACHELINE, cap * stride);
        if (!q->cells) {
                free(q);
                return NULL;
        }
        q->mask = cap - 1;
        q->elem_size = elem_size;
        q->stride = stride;
        for (size_t i = 0; i < cap; i++)
                atomic_init(&cell_at(q, i)->seq, i);
        atomic_init(&q->head, 0);
        atomic_init(&q->tail, 0);
        return q;
}

void mpmc_free(struct mpmc *q)
{
        if (!q)
                return;
        free(q->cells);
        free(q);
}

bool mpmc_try_push(struct mpmc *q, const void *elem)
{
        size_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
        struct cell *c;
        for (;;) {
                c = cell_at(q, pos);
                /* Acquire pairs with the consumer's release: its copy-out of the previous
                 * lap's element is finished before we overwrite the cell. */
                size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
                intptr_t diff = (intptr_t)seq - (intptr_t)pos;
                if (diff == 0) {
                        /* The cell's seq, not head, orders the data: relaxed is enough. */
                        if (atomic_compare_exchange_weak_explicit(&q->head, &pos, pos + 1,
                                                                  memory_order_relaxed,
                                                                  memory_order_relaxed))
                                break;
                } else if (diff < 0) {
                        return false; /* a lap behind: the consumer has not emptied it yet */
                } else {
                        pos = atomic_load_explicit(&q->head, memory_order_relaxed);
                }
        }
        memcpy(c->data, elem, q->elem_size);
        atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
        return true;
}

bool mpmc_try_pop(struct mpmc *q, void *elem)
{
        size_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
        struct cell *c;
        for (;;) {
                c = cell_at(q, pos);
                /* Acquire pairs with the producer's release: the element is fully written. */
                size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
                intptr_t diff = (intptr_t)seq - (intptr_t)(pos + 1);
                if (diff == 0) {
                        if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1,
                                                                  memory_order_relaxed,
                                                                  memory_order_relaxed))
                                break;
                } else if (diff < 0) {
                        return false;
                } else {
                        pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
                }
        }
        memcpy(elem, c->data, q->elem_size);
        /* Hand the cell to the producer one lap ahead. */
        atomic_store_explicit(&c->seq, pos + q->mask + 1, memory_order_release);
        return true;
}

size_t mpmc_size(const struct mpmc *q)
{
        /* Tail first: read the other way round, a pop between the loads could make
         * tail overtake the head we saw. */
        size_t tail = atomic_load_explicit(&q->tail, memory_order_acquire);
        size_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
        size_t n = head - tail;
        if ((intptr_t)n < 0)
                return 0;
        return n > q->mask + 1 ? q->mask + 1 : n;
}

size_t mpmc_capacity(const struct mpmc *q)
{
        return q->mask + 1;
}
