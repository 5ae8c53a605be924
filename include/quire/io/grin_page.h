/* The parser of GRIN's list pages, apart from HTTP so that tests can feed it captured
 * pages in any chunking. HTML goes through libxml2's HTML push parser with SAX callbacks
 * (parsed as it arrives, no tree, never regular expressions); the text format
 * (format=text) by lines. One grin_page reads a whole list: page after page, it checks
 * that every page has the columns of the first, and gives rows to a grin_sink.
 *
 *   grin_page_open(&p, sink, false);
 *   for each page: grin_page_begin(p, url, false); grin_page_feed(p, ...)...;
 *                  grin_page_end(p, &info); follow info.next while it is not empty
 *   grin_page_finish(p);
 *   grin_page_close(p);
 *
 * A page fetched again after a broken transfer is begun with retry = true: the rows it
 * gave the first time are not given again. */
#ifndef QUIRE_IO_GRIN_PAGE_H
#define QUIRE_IO_GRIN_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quire/io/grin.h"

struct grin_page;

struct grin_page_info {
        bool is_list;            /* the page had the list's heading row (or is a text list) */
        bool unavailable;        /* it said "Your request is unavailable": the list ends */
        char next[GRIN_URL_MAX]; /* the Next link, absolute; "" on the last page */
        char title[128];         /* the page's <title>, for messages about non-list pages */
        uint64_t rows;           /* rows this page gave (skipped ones included) */
};

/* text: the pages are format=text. Returns 0 or -ENOMEM. */
int grin_page_open(struct grin_page **out, const struct grin_sink *sink, bool text);
void grin_page_close(struct grin_page *p);

/* url: the page's own absolute URL (Next links are resolved against it). Returns 0 or
 * -ENOMEM. */
int grin_page_begin(struct grin_page *p, const char *url, bool retry);
/* Returns 0, the sink's nonzero value, or -EPROTO (msg set; see grin_page_error) when a
 * page's columns differ from the first page's. */
int grin_page_feed(struct grin_page *p, const char *data, size_t len);
/* Ends the page. Returns as grin_page_feed. A page that is not a list is not an error
 * here (info->is_list says so): the caller decides what it means. */
int grin_page_end(struct grin_page *p, struct grin_page_info *info);
/* After the last page: gives the sink its columns when no page did (an empty list; a
 * text list then has the one column "Filename"). Returns the sink's value. */
int grin_page_finish(struct grin_page *p);
/* Why the last call failed, one line. */
const char *grin_page_error(const struct grin_page *p);

/* Rows given so far over every page; rows skipped for an invalid barcode. */
uint64_t grin_page_rows(const struct grin_page *p);
uint64_t grin_page_skipped(const struct grin_page *p);

#endif
