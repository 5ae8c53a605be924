/* GRIN's list pages: the rows given to the sink, the text lists (format=text) by lines, and
 * the interface; HTML pages go through grin_page_html.c's SAX callbacks. */
#include "grin_page_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "quire/base/util.h"
#include "quire/engine/feeder.h"

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

int grin_page_give_columns(struct grin_page *p)
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

void grin_page_give_row(struct grin_page *p, const char *barcode_cell, const char *filename_cell,
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

void grin_page_watch_unavailable(struct grin_page *p, const char *s, size_t n)
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
        grin_page_watch_unavailable(p, line, n);
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
                if (grin_page_give_columns(p))
                        return;
        }
        const char *values[TEXT_COLS];
        size_t fl = strlen(fields[0]), sl = strlen(GRIN_SUFFIX);
        bool is_file = fl > sl && !strcmp(fields[0] + fl - sl, GRIN_SUFFIX);
        values[0] = is_file ? fields[0] : "";
        for (unsigned i = 1; i < p->ncols; i++)
                values[i] = i < nf ? fields[i] : "";
        grin_page_give_row(p, is_file ? NULL : fields[0], is_file ? fields[0] : NULL, values);
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
        p->html = grin_page_html_parser(p, url);
        return p->html ? 0 : -ENOMEM;
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
        return grin_page_give_columns(p);
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
