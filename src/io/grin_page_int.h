/* A grin_page's state, private to its two halves: grin_page.c (rows, text lists and the
 * interface) and grin_page_html.c (the HTML pages' SAX callbacks). */
#ifndef QUIRE_IO_GRIN_PAGE_INT_H
#define QUIRE_IO_GRIN_PAGE_INT_H

#include <libxml/HTMLparser.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "quire/io/grin_page.h"

#define NAME_MAX_LEN 128
#define ROW_MAX      (64 * 1024) /* text of one row, every cell */
#define LINE_MAX_LEN (16 * 1024) /* one line of a text list */
#define HREF_MAX     GRIN_URL_MAX
#define TEXT_COLS    8 /* Filename and up to 7 dates in a text list */

static const char unavailable_text[] = "Your request is unavailable";

struct grin_page {
        struct grin_sink sink;
        bool text;
        htmlParserCtxtPtr html;
        char url[GRIN_URL_MAX];
        char error[GRIN_URL_MAX + 128];
        int rc; /* first nonzero result of a callback on this page */

        /* columns, from the first page's heading row */
        bool have_columns;
        unsigned ncells_heading;  /* cells of the heading row */
        int named[GRIN_COLS_MAX]; /* cell index of each named column */
        unsigned ncols;           /* named columns */
        char names[GRIN_COLS_MAX][NAME_MAX_LEN];
        const char *name_ptrs[GRIN_COLS_MAX];
        int barcode_col, filename_col; /* cell indexes, -1 when absent */
        bool link_col[GRIN_COLS_MAX];  /* cells whose column is a link ("... Link") */

        /* where the SAX callbacks are */
        int table_depth, list_depth; /* list_depth: 0 not yet seen, -1 closed */
        int row_depth;               /* depth of the open <tr>, 0 none */
        bool row_heading, row_data;
        bool in_cell, in_hd3, in_title, in_anchor;
        bool in_code; /* <script>, <style>: text that is not the page's */
        unsigned ncells;
        size_t cell_start[GRIN_COLS_MAX + 1];
        char row[ROW_MAX];
        size_t rowlen;
        bool cell_space; /* a blank is pending before the next character of the cell */
        char cell_href[HREF_MAX];
        char href[HREF_MAX];
        char anchor_text[64];
        size_t anchor_len;
        char tail[sizeof unavailable_text]; /* last text bytes, for a phrase split in two */
        size_t tail_len;
        size_t title_len;

        /* text lists */
        char line[LINE_MAX_LEN];
        size_t linelen;
        bool line_too_long;

        /* this page and all pages */
        struct grin_page_info info;
        uint64_t skip; /* rows of a retried page already given */
        uint64_t rows_total, skipped_total;
};

static inline void copy_cut(char *dst, size_t dstlen, const char *src)
{
        snprintf(dst, dstlen, "%s", src ? src : "");
}

/* grin_page.c: the list's columns, once, to the sink; then its rows. Both keep the
 * sink's first nonzero answer in p->rc. */
int grin_page_give_columns(struct grin_page *p);
/* values[] hold one pointer per named column; barcode and file name as GRIN gave them. */
void grin_page_give_row(struct grin_page *p, const char *barcode_cell, const char *filename_cell,
                        const char *const *values);
/* Watches the page's text (HTML or lines) for "Your request is unavailable", also when
 * split between two chunks; sets info.unavailable. */
void grin_page_watch_unavailable(struct grin_page *p, const char *s, size_t n);

/* grin_page_html.c: a push parser for one HTML page whose SAX callbacks fill p. NULL when
 * out of memory. */
htmlParserCtxtPtr grin_page_html_parser(struct grin_page *p, const char *url);

#endif
