/* Where books come from: http(s):// through the worker's libcurl multi handle, or
 * file:// and plain path templates read through the worker's loop. Either way the bytes
 * go to book_feed() as they arrive and the end to book_download_done(). */
#ifndef QUIRE_SOURCE_H
#define QUIRE_SOURCE_H

struct book;

int source_init(struct book *b);
void source_destroy(struct book *b);
/* Starts fetching b->item.barcode from the configured source. */
void source_begin(struct book *b);
/* The key pool has derived (or given up on) the book's key: feed the waiting bytes. */
void source_key_ready(struct book *b);
/* The staging buffers have room again for what the source is waiting to deliver. */
void source_resume(struct book *b);
/* Stops a fetch in progress without calling book_download_done(). */
void source_abort(struct book *b);

#endif
