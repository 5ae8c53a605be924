/* Bounded lock-free multi-producer multi-consumer queue of fixed-size elements
 * (Vyukov's per-cell sequence numbers). Capacity is rounded up to a power of two (at
 * least 2) and fixed at creation; push and pop copy the element and never allocate or
 * block. Waiting is the caller's business (quire wakes workers with an eventfd).
 * A push that returned true is seen by a later pop with everything the pusher wrote
 * before it (release/acquire on the cell). */
#ifndef QUIRE_MPMC_H
#define QUIRE_MPMC_H

#include <stdbool.h>
#include <stddef.h>

struct mpmc;

/* NULL with errno set: EINVAL for a zero capacity or element size, ENOMEM. */
struct mpmc *mpmc_new(size_t capacity, size_t elem_size);
void mpmc_free(struct mpmc *q);
/* false when full */
bool mpmc_try_push(struct mpmc *q, const void *elem);
/* false when empty */
bool mpmc_try_pop(struct mpmc *q, void *elem);
/* Approximate number of queued elements (exact when quiescent). */
size_t mpmc_size(const struct mpmc *q);
size_t mpmc_capacity(const struct mpmc *q);

#endif
