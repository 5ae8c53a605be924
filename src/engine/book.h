/* One book slot of a worker: a barcode's way from the queue to the journal. The slot
 * owns its source slot, its stage, its digests, its key job and its sink slot, and is the
 * only module that knows them all; struct book is private to book.c, book_fetch.c and
 * book_deliver.c (book_int.h). */
#ifndef QUIRE_ENGINE_BOOK_H
#define QUIRE_ENGINE_BOOK_H

#include <stdbool.h>

struct book;
struct worker;
struct key_req;
struct queue_item;

/* Allocates a slot on the worker's thread (its source and sink slots too). 0 or -errno. */
int book_new(struct book **out, struct worker *w);
void book_free(struct book *b);
/* Free to take a barcode: no book, and nothing of the last one still in flight. */
bool book_idle(const struct book *b);
void book_start(struct book *b, const struct queue_item *item);
/* A download or upload slot, or staging room, may have come free. */
void book_pump(struct book *b);
/* Second Ctrl-C: drops the book wherever it is, leaving nothing partial behind. */
void book_abort(struct book *b);
/* The key pool gave back this slot's key job. */
void book_key_done(struct key_req *req);

#endif
