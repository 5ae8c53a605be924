/* GRIN's list pages: libxml2's HTML push parser with SAX callbacks, or text lines. */
#include "quire/io/grin_page.h"

#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quire/base/util.h"
#include "quire/engine/feeder.h"

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

/* ---- rows -------------------------------------------------------------------------- */

int grin_barcode_of(const char *barcode_col, const char *filename, char out[65])
{
        const char *src = barcode_col;
        size_t n = src ? strlen(src) : 0;
        if (!n && filename) {
                src = filename;
                n = strlen(filename);
                size_t sl = strlen(GRIN_SUFFIX);
                if (n > sl && !strcmp(filename + n - sl, GRIN_SUFFIX))
                        n -= sl;
        }
        if (!src || feeder_barcode_invalid(src, n))
                return -EINVAL;
        memcpy(out, src, n);
        out[n] = 0;
        return 0;
}

static void set_error(struct grin_page *p, const char *fmt, const char *arg)
{
        snprintf(p->error, sizeof p->error, fmt, arg);
}

static int give_columns(struct grin_page *p)
{
        if (p->rc)
                return p->rc;
        p->have_columns = true;
        if (p->sink.columns)
                p->rc = p->sink.columns(p->sink.ud, p->ncols, p->name_ptrs);
        return p->rc;
}

/* A file name GRIN gives is used as a path component: it must be one. */
static const char *valid_filename(const char *f)
{
        size_t n = strlen(f), sl = strlen(GRIN_SUFFIX);
        if (n <= sl || strcmp(f + n - sl, GRIN_SUFFIX) || feeder_barcode_invalid(f, n))
                return NULL;
        return f;
}

/* values[] hold one pointer per named column; barcode and file name as GRIN gave them. */
static void give_row(struct grin_page *p, const char *barcode_cell, const char *filename_cell,
                     const char *const *values)
{
        p->info.rows++;
        if (p->rc || p->info.rows <= p->skip)
                return;
        char barcode[BARCODE_MAX + 1];
        const char *filename =
            filename_cell && *filename_cell ? valid_filename(filename_cell) : NULL;
        if ((filename_cell && *filename_cell && !filename) ||
            grin_barcode_of(barcode_cell, filename, barcode) < 0) {
                p->skipped_total++;
                qlog("%s: row %llu: no valid barcode or file name; skipped", p->url,
                     (unsigned long long)p->info.rows);
                return;
        }
        struct grin_row r = {barcode, filename, p->ncols, p->name_ptrs, values};
        p->rows_total++;
        p->rc = p->sink.row(p->sink.ud, &r);
}

/* ---- HTML: SAX callbacks ---------------------------------------------------------- */

static const char *attr(const xmlChar **atts, const char *name)
{
        for (size_t i = 0; atts && atts[i]; i += 2)
                if (!strcasecmp((const char *)atts[i], name))
                        return atts[i + 1] ? (const char *)atts[i + 1] : "";
        return NULL;
}

static bool has_class(const xmlChar **atts, const char *cls)
{
        const char *c = attr(atts, "class");
        size_t n = strlen(cls);
        for (const char *s = c; s && (s = strstr(s, cls)); s += n)
                if ((s == c || s[-1] == ' ') && (s[n] == 0 || s[n] == ' '))
                        return true;
        return false;
}

static void copy_cut(char *dst, size_t dstlen, const char *src)
{
        snprintf(dst, dstlen, "%s", src ? src : "");
}

/* Cell text with runs of blanks collapsed to one space and none at either end. */
static void cell_append(struct grin_page *p, const char *s, size_t n)
{
        size_t cell_len = p->rowlen - p->cell_start[p->ncells];
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
                        p->cell_space = cell_len > 0;
                        continue;
                }
                /* UTF-8 no-break space, as &nbsp; decodes: a blank too */
                if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa0) {
                        p->cell_space = cell_len > 0;
                        i++;
                        continue;
                }
                size_t need = p->cell_space ? 2 : 1;
                if (cell_len + need >= GRIN_CELL_MAX || p->rowlen + need >= ROW_MAX - 1)
                        return;
                if (p->cell_space)
                        p->row[p->rowlen++] = ' ';
                p->cell_space = false;
                p->row[p->rowlen++] = (char)c;
                cell_len += need;
        }
}

static void watch_unavailable(struct grin_page *p, const char *s, size_t n)
{
        const size_t k = sizeof unavailable_text - 1;
        char joint[2 * sizeof unavailable_text];
        size_t head = n < k - 1 ? n : k - 1;
        memcpy(joint, p->tail, p->tail_len);
        memcpy(joint + p->tail_len, s, head);
        if (memmem(joint, p->tail_len + head, unavailable_text, k) ||
            memmem(s, n, unavailable_text, k))
                p->info.unavailable = true;
        /* keep the last k-1 bytes of everything seen */
        size_t keep = k - 1;
        if (n >= keep) {
                memcpy(p->tail, s + n - keep, keep);
                p->tail_len = keep;
        } else {
                size_t total = p->tail_len + n, drop = total > keep ? total - keep : 0;
                memmove(p->tail, p->tail + drop, p->tail_len - drop);
                memcpy(p->tail + p->tail_len - drop, s, n);
                p->tail_len = total - drop;
        }
}

static void start_row(struct grin_page *p, const xmlChar **atts)
{
        p->row_depth = p->table_depth;
        p->row_heading = has_class(atts, "heading");
        if (p->row_heading && p->list_depth == 0)
                p->list_depth = p->table_depth;
        p->row_heading = p->row_heading && p->list_depth == p->table_depth;
        p->row_data = !p->row_heading && p->list_depth == p->table_depth && p->info.is_list;
        p->ncells = 0;
        p->rowlen = 0;
        p->in_cell = false;
}

static void start_cell(struct grin_page *p)
{
        if (p->in_cell || p->ncells >= GRIN_COLS_MAX)
                return;
        p->in_cell = true;
        p->cell_space = false;
        p->cell_start[p->ncells] = p->rowlen;
        p->cell_href[0] = 0;
}

static void end_cell(struct grin_page *p)
{
        if (!p->in_cell)
                return;
        p->in_cell = false;
        p->in_hd3 = false;
        /* A link without text, or in a link column, stands for its target. */
        if (p->cell_href[0] && p->row_data && p->link_col[p->ncells])
                p->rowlen = p->cell_start[p->ncells];
        if (p->rowlen == p->cell_start[p->ncells] && p->cell_href[0]) {
                size_t n = strnlen(p->cell_href, GRIN_CELL_MAX - 1);
                if (p->rowlen + n < ROW_MAX - 1) {
                        memcpy(p->row + p->rowlen, p->cell_href, n);
                        p->rowlen += n;
                }
        }
        p->row[p->rowlen++] = 0;
        p->ncells++;
        p->cell_start[p->ncells] = p->rowlen;
}

static const char *cell(const struct grin_page *p, int i)
{
        return i >= 0 && (unsigned)i < p->ncells ? p->row + p->cell_start[i] : "";
}

static void heading_row_done(struct grin_page *p)
{
        char names[GRIN_COLS_MAX][NAME_MAX_LEN];
        int named[GRIN_COLS_MAX];
        unsigned n = 0;
        int barcode_col = -1, filename_col = -1;
        for (unsigned i = 0; i < p->ncells; i++) {
                const char *name = cell(p, (int)i);
                if (!*name)
                        continue;
                copy_cut(names[n], NAME_MAX_LEN, name);
                named[n++] = (int)i;
                if (!p->have_columns)
                        p->link_col[i] = strstr(name, "Link") != NULL;
                if (!strcasecmp(name, "Barcode") && barcode_col < 0)
                        barcode_col = (int)i;
                else if (!strcasecmp(name, "Filename") && filename_col < 0)
                        filename_col = (int)i;
        }
        p->info.is_list = true;
        if (p->have_columns) {
                bool same = n == p->ncols && p->ncells == p->ncells_heading;
                for (unsigned i = 0; same && i < n; i++)
                        same = !strcmp(names[i], p->names[i]);
                if (!same && !p->rc) {
                        set_error(p, "%s: this page's columns differ from the first page's",
                                  p->url);
                        p->rc = -EPROTO;
                }
                return;
        }
        memcpy(p->names, names, sizeof names);
        memcpy(p->named, named, sizeof named);
        p->ncols = n;
        p->ncells_heading = p->ncells;
        p->barcode_col = barcode_col;
        p->filename_col = filename_col;
        for (unsigned i = 0; i < n; i++)
                p->name_ptrs[i] = p->names[i];
        give_columns(p);
}

static void data_row_done(struct grin_page *p)
{
        /* A row of one cell spanning the table (a note, a footer) is no book. */
        if (p->ncells < 2 && p->ncells_heading >= 2)
                return;
        const char *values[GRIN_COLS_MAX];
        for (unsigned i = 0; i < p->ncols; i++)
                values[i] = cell(p, p->named[i]);
        give_row(p, p->barcode_col >= 0 ? cell(p, p->barcode_col) : NULL,
                 p->filename_col >= 0 ? cell(p, p->filename_col) : NULL, values);
}

static void end_row(struct grin_page *p)
{
        end_cell(p);
        if (p->row_heading)
                heading_row_done(p);
        else if (p->row_data)
                data_row_done(p);
        p->row_depth = 0;
        p->row_heading = p->row_data = false;
}

/* The Next link: outside the list's rows, its text says "Next" or ">", its target pages
 * by first= or ctoken=. The last such link of a page counts: pagination follows the
 * list, where a page's header may have other links that say "Next". */
static void end_anchor(struct grin_page *p)
{
        p->in_anchor = false;
        p->anchor_text[p->anchor_len] = 0;
        if (p->row_data || !(strstr(p->anchor_text, "Next") || strchr(p->anchor_text, '>')) ||
            !(strstr(p->href, "first=") || strstr(p->href, "ctoken=")))
                return;
        CURLU *u = curl_url();
        char *abs = NULL;
        if (u && !curl_url_set(u, CURLUPART_URL, p->url, 0) &&
            !curl_url_set(u, CURLUPART_URL, p->href, 0) &&
            !curl_url_get(u, CURLUPART_URL, &abs, 0) && strlen(abs) < sizeof p->info.next)
                copy_cut(p->info.next, sizeof p->info.next, abs);
        else
                qlog("%s: a Next link that is no URL; ignored", p->url);
        curl_free(abs);
        curl_url_cleanup(u);
}

static void on_start(void *ctx, const xmlChar *tag, const xmlChar **atts)
{
        struct grin_page *p = ctx;
        const char *name = (const char *)tag;
        if (!strcmp(name, "table")) {
                p->table_depth++;
        } else if (!strcmp(name, "tr")) {
                /* rows of a table inside a cell are part of that cell */
                bool nested = p->row_depth && p->row_depth < p->table_depth;
                if (p->row_depth && !nested)
                        end_row(p);
                if (!nested && p->table_depth > 0 && p->list_depth >= 0)
                        start_row(p, atts);
        } else if ((!strcmp(name, "td") || !strcmp(name, "th")) && p->row_depth &&
                   p->row_depth == p->table_depth) {
                end_cell(p);
                start_cell(p);
        } else if (!strcmp(name, "span") && p->in_cell && p->row_heading &&
                   has_class(atts, "hd3")) {
                p->in_hd3 = true;
        } else if (!strcmp(name, "a")) {
                copy_cut(p->href, sizeof p->href, attr(atts, "href"));
                p->in_anchor = true;
                p->anchor_len = 0;
                if (p->in_cell && !p->cell_href[0])
                        copy_cut(p->cell_href, sizeof p->cell_href, p->href);
        } else if (!strcmp(name, "title")) {
                p->in_title = true;
        } else if (!strcmp(name, "script") || !strcmp(name, "style")) {
                p->in_code = true;
        }
}

static void on_end(void *ctx, const xmlChar *tag)
{
        struct grin_page *p = ctx;
        const char *name = (const char *)tag;
        if (!strcmp(name, "table")) {
                if (p->row_depth == p->table_depth)
                        end_row(p);
                if (p->list_depth == p->table_depth)
                        p->list_depth = -1; /* the list's table is over */
                if (p->table_depth > 0)
                        p->table_depth--;
        } else if (!strcmp(name, "tr")) {
                if (p->row_depth && p->row_depth == p->table_depth)
                        end_row(p);
        } else if ((!strcmp(name, "td") || !strcmp(name, "th")) && p->row_depth == p->table_depth) {
                end_cell(p);
        } else if (!strcmp(name, "span")) {
                p->in_hd3 = false;
        } else if (!strcmp(name, "a") && p->in_anchor) {
                end_anchor(p);
        } else if (!strcmp(name, "title")) {
                p->in_title = false;
        } else if (!strcmp(name, "script") || !strcmp(name, "style")) {
                p->in_code = false;
        }
}

static void on_chars(void *ctx, const xmlChar *ch, int len)
{
        struct grin_page *p = ctx;
        const char *s = (const char *)ch;
        size_t n = (size_t)len;
        if (p->in_code)
                return;
        watch_unavailable(p, s, n);
        /* A heading cell's name is its hd3 span; other text there (sort marks) is not, nor
         * the text of a table inside a cell. */
        if (p->in_cell && p->table_depth == p->row_depth && (!p->row_heading || p->in_hd3))
                cell_append(p, s, n);
        if (p->in_anchor) {
                size_t room = sizeof p->anchor_text - 1 - p->anchor_len;
                size_t k = n < room ? n : room;
                memcpy(p->anchor_text + p->anchor_len, s, k);
                p->anchor_len += k;
        }
        if (p->in_title) {
                size_t room = sizeof p->info.title - 1 - p->title_len;
                size_t k = n < room ? n : room;
                memcpy(p->info.title + p->title_len, s, k);
                p->title_len += k;
                p->info.title[p->title_len] = 0;
        }
}

/* ---- text lists ------------------------------------------------------------------- */

static const char *const text_names[TEXT_COLS] = {"Filename", "Date1", "Date2", "Date3",
                                                  "Date4",    "Date5", "Date6", "Date7"};

static void text_line(struct grin_page *p, char *line, size_t n)
{
        line[n] = 0;
        while (n && (line[n - 1] == '\r' || line[n - 1] == ' '))
                line[--n] = 0;
        if (!n)
                return;
        watch_unavailable(p, line, n);
        if (p->info.unavailable)
                return;
        const char *fields[TEXT_COLS] = {0};
        unsigned nf = 0;
        for (char *s = line, *tab; s && nf < TEXT_COLS; s = tab ? tab + 1 : NULL) {
                tab = strchr(s, '\t');
                if (tab)
                        *tab = 0;
                fields[nf++] = s;
        }
        if (!p->have_columns) {
                p->ncols = nf;
                for (unsigned i = 0; i < nf; i++)
                        p->name_ptrs[i] = text_names[i];
                if (give_columns(p))
                        return;
        }
        const char *values[TEXT_COLS];
        size_t fl = strlen(fields[0]), sl = strlen(GRIN_SUFFIX);
        bool is_file = fl > sl && !strcmp(fields[0] + fl - sl, GRIN_SUFFIX);
        values[0] = is_file ? fields[0] : "";
        for (unsigned i = 1; i < p->ncols; i++)
                values[i] = i < nf ? fields[i] : "";
        give_row(p, is_file ? NULL : fields[0], is_file ? fields[0] : NULL, values);
}

static void text_feed(struct grin_page *p, const char *data, size_t len)
{
        for (const char *s = data, *end = data + len; s < end && !p->rc;) {
                const char *nl = memchr(s, '\n', (size_t)(end - s));
                size_t n = (size_t)((nl ? nl : end) - s);
                if (p->linelen + n >= sizeof p->line) {
                        p->line_too_long = true;
                        n = 0;
                }
                memcpy(p->line + p->linelen, s, n);
                p->linelen += n;
                if (!nl)
                        break;
                if (p->line_too_long)
                        qlog("%s: a line longer than %d bytes; skipped", p->url, LINE_MAX_LEN);
                else
                        text_line(p, p->line, p->linelen);
                p->linelen = 0;
                p->line_too_long = false;
                s = nl + 1;
        }
}

/* ---- interface -------------------------------------------------------------------- */

int grin_page_open(struct grin_page **out, const struct grin_sink *sink, bool text)
{
        assert(sink->row);
        struct grin_page *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        xmlInitParser();
        p->sink = *sink;
        p->text = text;
        p->barcode_col = p->filename_col = -1;
        *out = p;
        return 0;
}

void grin_page_close(struct grin_page *p)
{
        if (!p)
                return;
        if (p->html)
                htmlFreeParserCtxt(p->html);
        free(p);
}

int grin_page_begin(struct grin_page *p, const char *url, bool retry)
{
        p->skip = retry ? p->info.rows : 0;
        memset(&p->info, 0, sizeof p->info);
        copy_cut(p->url, sizeof p->url, url);
        p->rc = 0;
        p->error[0] = 0;
        p->table_depth = p->list_depth = p->row_depth = 0;
        p->row_heading = p->row_data = p->in_cell = p->in_hd3 = p->in_title = p->in_anchor = false;
        p->tail_len = p->title_len = p->linelen = 0;
        p->line_too_long = false;
        if (p->html) {
                htmlFreeParserCtxt(p->html);
                p->html = NULL;
        }
        if (p->text) {
                p->info.is_list = true;
                return 0;
        }
        htmlSAXHandler sax;
        memset(&sax, 0, sizeof sax);
        sax.startElement = on_start;
        sax.endElement = on_end;
        sax.characters = on_chars;
        sax.ignorableWhitespace = on_chars;
        p->html = htmlCreatePushParserCtxt(&sax, p, NULL, 0, url, XML_CHAR_ENCODING_NONE);
        if (!p->html)
                return -ENOMEM;
        htmlCtxtUseOptions(p->html, HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                        HTML_PARSE_NONET);
        return 0;
}

int grin_page_feed(struct grin_page *p, const char *data, size_t len)
{
        if (p->rc || !len)
                return p->rc;
        if (p->text)
                text_feed(p, data, len);
        else
                (void)htmlParseChunk(p->html, data, (int)len, 0); /* recovers from any error */
        return p->rc;
}

int grin_page_end(struct grin_page *p, struct grin_page_info *info)
{
        if (p->text) {
                if (!p->rc && p->linelen && !p->line_too_long)
                        text_line(p, p->line, p->linelen);
                p->linelen = 0;
        } else if (p->html) {
                (void)htmlParseChunk(p->html, NULL, 0, 1);
                htmlFreeParserCtxt(p->html);
                p->html = NULL;
        }
        *info = p->info;
        return p->rc;
}

int grin_page_finish(struct grin_page *p)
{
        if (p->have_columns)
                return 0;
        p->rc = 0;
        if (p->text) {
                p->ncols = 1;
                p->name_ptrs[0] = text_names[0];
        }
        return give_columns(p);
}

const char *grin_page_error(const struct grin_page *p)
{
        return p->error;
}

uint64_t grin_page_rows(const struct grin_page *p)
{
        return p->rows_total;
}

uint64_t grin_page_skipped(const struct grin_page *p)
{
        return p->skipped_total;
}
