/* Google's GRIN, the parts that need no engine: its list endpoints read page by page as
 * rows, the set difference "all books minus converted, in process and failed", and
 * conversion requests (see grin_request.h). Everything known about GRIN is in
 * shared/grin.md; what is uncertain there (column names, barcode of a prefixed file name)
 * is decided in one place each here.
 *
 * A list is read synchronously on the caller's thread, page after page, each page parsed
 * as it arrives (libxml2's HTML push parser, or the text format's lines), so memory is
 * bounded by one row whatever the list's length. The engine's feeder is meant to run it
 * on a producer thread of its own writing "barcode<TAB>filename" lines into a pipe
 * (grin_list_to_fd): the pipe's capacity is then the only buffer, and a full pipe makes
 * the producer wait. */
#ifndef QUIRE_IO_GRIN_H
#define QUIRE_IO_GRIN_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GRIN_URL_DEFAULT "https://books.google.com/libraries"
#define GRIN_COLS_MAX    64   /* columns of a list beyond this are dropped */
#define GRIN_CELL_MAX    4096 /* bytes of one cell's text; the rest is cut */
#define GRIN_URL_MAX     8192 /* a Next link or a URL quire builds */
#define GRIN_SUFFIX      ".tar.gz.gpg"

struct auth;

/* Where a library is and how to reach it. The strings and auth are the caller's and must
 * outlive every call that takes the site. */
struct grin_site {
        const char *url;     /* GRIN_URL; NULL: GRIN_URL_DEFAULT */
        const char *library; /* GRIN's directory name of the library, e.g. "NYPL" */
        struct auth *auth;   /* credentials (auth.h); NULL: none */
        const char *ca_file; /* NULL: the system's trust store */
};

enum grin_list_kind {
        GRIN_LIST_CONVERTED,  /* _converted: ready to download, with a Filename column */
        GRIN_LIST_ALL,        /* _all_books */
        GRIN_LIST_IN_PROCESS, /* _in_process (text): conversion requested, not finished */
        GRIN_LIST_FAILED,     /* _failed: conversions that failed, with GRIN's reasons */
};

/* "converted", "all", "in-process", "failed". Returns 0 or -EINVAL. */
int grin_list_kind_parse(const char *name, enum grin_list_kind *out);
/* The endpoint and query of a list, relative to the library's base, e.g.
 * "_converted?result_count=50000". */
const char *grin_list_path(enum grin_list_kind kind);

/* One row of a list. names[i] is GRIN's header of column i as GRIN spells it (columns
 * without a name, such as the checkbox column, are left out); values[i] the cell's text,
 * blanks collapsed, or the link's href when the cell is a link without text or in a
 * column whose name has "Link" in it ("Google Books Link"). A text list
 * has the columns "Filename" (the entry when it ends in ".tar.gz.gpg", else "") and
 * "Date1".. for the tab-separated fields after it. Pointers are valid during the call. */
struct grin_row {
        const char *barcode;  /* never NULL, valid by feeder_barcode_invalid() */
        const char *filename; /* "NLI_X.tar.gz.gpg" where GRIN gave one, else NULL */
        unsigned ncols;
        const char *const *names;
        const char *const *values;
};

/* Where the rows go. columns() is called once, before the first row (or at the end of an
 * empty list), with the names every row will carry. A nonzero return from either stops
 * the list, and grin_list_fetch returns that value. */
struct grin_sink {
        int (*columns)(void *ud, unsigned ncols, const char *const *names);
        int (*row)(void *ud, const struct grin_row *row);
        void *ud;
};

/* The barcode GRIN means by a row, decided here: the Barcode column when the list has one,
 * else the file name without ".tar.gz.gpg" (the Python pipeline's rule, so "NLI_X.tar.gz.gpg"
 * is barcode "NLI_X"). out holds 65 bytes. Returns 0, or -EINVAL when that is not a
 * valid barcode. */
int grin_barcode_of(const char *barcode_col, const char *filename, char out[65]);

/* Fetches the list, following every Next link (relative or absolute) until a page has
 * none or says "Your request is unavailable" (noted on stderr), and gives each row to the
 * sink. A 302 to ServiceLogin or a 401 makes quire ask auth for a new token once and
 * retry; a transfer that fails or a 5xx is retried (3 times, backing off) without giving a
 * row twice. Rows whose barcode is not valid are skipped with a line on stderr.
 * Returns 0; the sink's nonzero value; or -errno with a one-line message in msg:
 * -EACCES GRIN wants a login (HTML where a list was expected, ServiceLogin, 401 after a
 * refresh) or refused the account (403); -EPROTO the page is no list quire understands,
 * or a Next link it will not follow; -EIO the network or another HTTP status. */
int grin_list_fetch(const struct grin_site *site, enum grin_list_kind kind,
                    const struct grin_sink *sink, char *msg, size_t msglen);

/* _all_books minus converted, in process and failed, as rows of _all_books. The three
 * smaller lists go first into a set of 64-bit hashes of their barcodes (grin_set.h),
 * then _all_books streams through it. Same returns as grin_list_fetch. */
int grin_unconverted_fetch(const struct grin_site *site, const struct grin_sink *sink, char *msg,
                           size_t msglen);

/* For a feeder: writes "barcode<TAB>filename\n" per row of kind (the file name GRIN gave,
 * else BARCODE.tar.gz.gpg) to fd, blocking when it is a full pipe; kind -1 means
 * unconverted. Returns as grin_list_fetch, or -EPIPE when the reader went away (the
 * caller ignores SIGPIPE). */
int grin_list_to_fd(const struct grin_site *site, int kind, int fd, char *msg, size_t msglen);

/* One HTTP GET of GRIN: credentials from the site's auth, ServiceLogin and 401 answered
 * by one token refresh (auth_unauthorized, then waiting up to 30 s for whoever refreshes
 * this process's tokens), redirects followed only through http_redirect_check and never
 * with the token to another host, broken transfers and 5xx retried. begin() (optional)
 * is called before every attempt with the URL it goes to; the body of a 200 goes to
 * body() (a nonzero return aborts the transfer and is returned). Returns 0 when a 200 was
 * received whole, else as grin_list_fetch. Blocking, on the caller's thread. */
struct grin_get {
        CURL *e; /* the handle to use (reset first); NULL: one of its own */
        int (*begin)(void *ud, const char *url);
        int (*body)(void *ud, const char *data, size_t len, const char *content_type);
        void *ud;
        bool retry_429;         /* a 429 is retried like a 5xx (not for _process) */
        long status;            /* of the final answer */
        unsigned retry_after_s; /* of the final answer */
};
int grin_http_get(const struct grin_site *site, const char *url, struct grin_get *g, char *msg,
                  size_t msglen);

/* Whether a redirect's Location is GRIN's way of saying "log in again" (Google's
 * ServiceLogin). */
bool grin_login_redirect(const char *location);

/* GRIN_URL/LIBRARY/path into out (GRIN_URL_MAX bytes), the library name escaped. Returns
 * 0 or -ENAMETOOLONG. */
int grin_url(const struct grin_site *site, const char *path, char *out);

#endif
