/* A set of barcodes kept as 64-bit hashes (8 bytes a slot, at most three quarters full:
 * 11-21 bytes a barcode, and half as much again while the table doubles), for "_all_books minus the
 * books GRIN already knows". Two different barcodes share a hash with probability about n^2 / 2^65
 * for n barcodes (3e-8 for a million): such a book would be taken for known and not requested. The
 * hash is keyed by a random seed per set, so a server cannot choose barcodes that collide. */
#ifndef QUIRE_IO_GRIN_SET_H
#define QUIRE_IO_GRIN_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct grin_set;

/* max: the most barcodes it will hold (the table grows by doubling up to that). Returns
 * NULL when out of memory. */
struct grin_set *grin_set_new(uint64_t max);
void grin_set_free(struct grin_set *s);

/* Returns 1 when added, 0 when it was there, -ENOSPC past max, -ENOMEM. */
int grin_set_add(struct grin_set *s, const char *barcode, size_t len);
bool grin_set_has(const struct grin_set *s, const char *barcode, size_t len);
uint64_t grin_set_count(const struct grin_set *s);
/* Bytes the table takes. */
size_t grin_set_bytes(const struct grin_set *s);

#endif
