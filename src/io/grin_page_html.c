/* GRIN's HTML list pages: libxml2's HTML push parser with SAX callbacks that find the
 * list's table, its heading row (the columns), its data rows, the Next link and the
 * page's title, as the page arrives. */
#include "grin_page_int.h"

#include <curl/curl.h>
#include <errno.h>
#include <libxml/parser.h>
#include <string.h>
#include <strings.h>

#include "quire/base/util.h"

static void set_error(struct grin_page *p, const char *fmt, const char *arg)
{
        snprintf(p->error, sizeof p->error, fmt, arg);
}

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
        grin_page_give_columns(p);
}

static void data_row_done(struct grin_page *p)
{
        /* A row of one cell spanning the table (a note, a footer) is no book. */
        if (p->ncells < 2 && p->ncells_heading >= 2)
                return;
        const char *values[GRIN_COLS_MAX];
        for (unsigned i = 0; i < p->ncols; i++)
                values[i] = cell(p, p->named[i]);
        grin_page_give_row(p, p->barcode_col >= 0 ? cell(p, p->barcode_col) : NULL,
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
        grin_page_watch_unavailable(p, s, n);
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

htmlParserCtxtPtr grin_page_html_parser(struct grin_page *p, const char *url)
{
        htmlSAXHandler sax;
        memset(&sax, 0, sizeof sax);
        sax.startElement = on_start;
        sax.endElement = on_end;
        sax.characters = on_chars;
        sax.ignorableWhitespace = on_chars;
        htmlParserCtxtPtr h =
            htmlCreatePushParserCtxt(&sax, p, NULL, 0, url, XML_CHAR_ENCODING_NONE);
        if (!h)
                return NULL;
        htmlCtxtUseOptions(h, HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                  HTML_PARSE_NONET);
        return h;
}
