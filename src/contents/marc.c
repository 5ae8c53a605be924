/* The MARC record out of Google's METS, by libxml2's streaming xmlTextReader. The reader
 * rather than SAX: it is a pull API, so it runs inside the contents thread's own pull
 * loop over the tar member (no second state machine of callbacks), it frees each node as
 * it moves on (bounded memory whatever the METS size), and it gives each node's namespace
 * URI and depth, which is all the path mets:dmdSec/mets:mdWrap/mets:xmlData/marc:record
 * needs. Entities are never substituted, no DTD or network is loaded, and the member's
 * size is capped (CONTENTS_MAX_XML) on top of libxml2's own limits.
 *
 * The rules are the Python pipeline's (ElementTree): the first record in document order;
 * of each wanted element only its text before its first child element; single fields
 * from their first match even when that one is empty; str.strip() of Unicode
 * whitespace; 008's positions counted in characters after stripping; oclc joined, split
 * again on ", ", and filtered on "(OCoLC)". */
#include "contents_int.h"
#include "quire/base/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/xmlreader.h>

#define NS_METS   "http://www.loc.gov/METS/"
#define NS_MARC   "http://www.loc.gov/MARC21/slim"
#define MAX_DEPTH 512

enum field {
        F_001,
        F_008,
        F_010A,
        F_245A,
        F_245B,
        F_100A,
        F_110A,
        F_111A,
        F_050A, /* the repeating ones from here */
        F_020A,
        F_650A,
        F_655A,
        F_500A,
        F_035A,
        NFIELDS
};
#define FIRST_LIST F_050A

static const struct {
        const char tag[4];
        char code; /* 0: a controlfield */
} wanted[NFIELDS] = {
    [F_001] = {"001", 0},    [F_008] = {"008", 0},    [F_010A] = {"010", 'a'},
    [F_245A] = {"245", 'a'}, [F_245B] = {"245", 'b'}, [F_100A] = {"100", 'a'},
    [F_110A] = {"110", 'a'}, [F_111A] = {"111", 'a'}, [F_050A] = {"050", 'a'},
    [F_020A] = {"020", 'a'}, [F_650A] = {"650", 'a'}, [F_655A] = {"655", 'a'},
    [F_500A] = {"500", 'a'}, [F_035A] = {"035", 'a'},
};

const char *const contents_marc_keys[] = {
    "control_number", "date1",
    "date2",          "date_type",
    "language",       "loc_control_number",
    "title",          "title_remainder",
    "author100",      "author110",
    "author111",      "loc_call_number",
    "isbn",           "subject",
    "genre",          "note",
    "oclc",           NULL,
};

struct str {
        char *p;
        size_t n, cap;
};

enum el { EL_OTHER, EL_DMDSEC, EL_MDWRAP, EL_XMLDATA, EL_RECORD, EL_DATAFIELD };

struct marc {
        bool found;
        /* single fields: set once their first match ended; list fields: values so far */
        bool settled[NFIELDS];
        bool has[NFIELDS]; /* a value (single) or at least one value (list) */
        struct str val[NFIELDS];
        bool too_large;
        /* parse state */
        enum el stack[MAX_DEPTH];
        char dtag[MAX_DEPTH][4];  /* the tag of a datafield at that depth */
        int record_depth;         /* -1 outside the record */
        int cap_field, cap_depth; /* the element whose text is being taken, -1 none */
        struct str text;
        char *err;
};

int marc_new(struct marc **out)
{
        struct marc *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        *out = m;
        return 0;
}

void marc_free(struct marc *m)
{
        if (!m)
                return;
        for (int i = 0; i < NFIELDS; i++)
                free(m->val[i].p);
        free(m->text.p);
        free(m->err);
        free(m);
}

static bool str_add(struct str *s, const char *p, size_t n, size_t limit)
{
        if (s->n + n > limit)
                return false;
        if (s->n + n + 1 > s->cap) {
                size_t cap = s->cap ? s->cap : 64;
                while (cap < s->n + n + 1)
                        cap *= 2;
                char *q = realloc(s->p, cap);
                if (!q)
                        return false;
                s->p = q;
                s->cap = cap;
        }
        memcpy(s->p + s->n, p, n);
        s->n += n;
        s->p[s->n] = 0;
        return true;
}

/* Python's str.isspace() for one code point. */
static bool py_space(uint32_t c)
{
        return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
               c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
               c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The code point at p (valid UTF-8, as libxml2 gives it) and its length. */
static uint32_t cp_at(const unsigned char *p, size_t *len)
{
        if (p[0] < 0x80) {
                *len = 1;
                return p[0];
        }
        if (p[0] < 0xe0) {
                *len = 2;
                return (uint32_t)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
        }
        if (p[0] < 0xf0) {
                *len = 3;
                return (uint32_t)(p[0] & 0x0f) << 12 | (uint32_t)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
        }
        *len = 4;
        return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3f) << 12 |
               (uint32_t)(p[2] & 0x3f) << 6 | (p[3] & 0x3f);
}

/* str.strip(): the range [*b, *e) of s without leading and trailing whitespace. */
static void py_strip(const char *s, size_t n, size_t *b, size_t *e)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i = 0, len, last_end = 0;
        *b = n;
        for (; i < n; i += len) {
                uint32_t c = cp_at(u + i, &len);
                if (!py_space(c)) {
                        if (*b == n)
                                *b = i;
                        last_end = i + len;
                }
        }
        *e = *b == n ? n : last_end;
}

/* The taken text of a finished element, per the field's rules. */
static void take_value(struct marc *m, int f)
{
        size_t b, e;
        py_strip(m->text.p ? m->text.p : "", m->text.n, &b, &e);
        const char *v = m->text.p ? m->text.p + b : "";
        size_t n = e - b;
        if (f < FIRST_LIST) {
                /* ElementTree's field.text: None or "" gives None; else stripped. */
                m->settled[f] = true;
                if (m->text.n) {
                        m->has[f] = true;
                        m->too_large |= !str_add(&m->val[f], v, n, CONTENTS_MAX_MARC_TEXT);
                }
                return;
        }
        if (!m->text.n)
                return;
        if (f == F_650A || f == F_655A)
                while (n && v[n - 1] == '.')
                        n--;
        if (m->has[f])
                m->too_large |= !str_add(&m->val[f], ", ", 2, 4 * CONTENTS_MAX_MARC_TEXT);
        m->has[f] = true;
        m->too_large |= !str_add(&m->val[f], v, n, 4 * CONTENTS_MAX_MARC_TEXT);
}

static bool is_ns(xmlTextReaderPtr r, const char *ns)
{
        const xmlChar *u = xmlTextReaderConstNamespaceUri(r);
        return u && !strcmp((const char *)u, ns);
}

static bool named(xmlTextReaderPtr r, const char *local)
{
        return !strcmp((const char *)xmlTextReaderConstLocalName(r), local);
}

/* The field an element starts taking text for, or -1. */
static int field_of(struct marc *m, xmlTextReaderPtr r, int depth)
{
        bool control = named(r, "controlfield");
        if (!control && !(named(r, "subfield") && depth > 0 && m->stack[depth - 1] == EL_DATAFIELD))
                return -1;
        xmlChar *a = xmlTextReaderGetAttribute(r, BAD_CAST(control ? "tag" : "code"));
        int f = -1;
        for (int i = 0; a && i < NFIELDS && f < 0; i++) {
                if (control ? (!wanted[i].code && !strcmp((char *)a, wanted[i].tag))
                            : (wanted[i].code && a[0] == (xmlChar)wanted[i].code && !a[1] &&
                               !strcmp(m->dtag[depth - 1], wanted[i].tag)))
                        f = i;
        }
        xmlFree(a);
        if (f >= 0 && f < FIRST_LIST && m->settled[f])
                return -1;
        return f;
}

static enum el classify(struct marc *m, xmlTextReaderPtr r, int depth)
{
        enum el parent = depth > 0 ? m->stack[depth - 1] : EL_OTHER;
        if (m->record_depth < 0 && is_ns(r, NS_METS)) {
                if (named(r, "dmdSec") && depth >= 1)
                        return EL_DMDSEC;
                if (named(r, "mdWrap") && parent == EL_DMDSEC)
                        return EL_MDWRAP;
                if (named(r, "xmlData") && parent == EL_MDWRAP)
                        return EL_XMLDATA;
        }
        if (!is_ns(r, NS_MARC))
                return EL_OTHER;
        if (m->record_depth < 0 && named(r, "record") && parent == EL_XMLDATA)
                return EL_RECORD;
        if (m->record_depth >= 0 && named(r, "datafield"))
                return EL_DATAFIELD;
        return EL_OTHER;
}

static void end_capture(struct marc *m)
{
        if (m->cap_field >= 0)
                take_value(m, m->cap_field);
        m->cap_field = -1;
        m->text.n = 0;
}

static void on_element(struct marc *m, xmlTextReaderPtr r, int depth)
{
        /* A child element ends its parent's ElementTree .text. */
        if (m->cap_field >= 0 && depth > m->cap_depth)
                end_capture(m);
        enum el k = classify(m, r, depth);
        m->stack[depth] = k;
        if (k == EL_DATAFIELD) {
                xmlChar *a = xmlTextReaderGetAttribute(r, BAD_CAST "tag");
                snprintf(m->dtag[depth], sizeof m->dtag[depth], "%s",
                         a && strlen((char *)a) == 3 ? (char *)a : "");
                xmlFree(a);
        }
        if (k == EL_RECORD) {
                m->record_depth = depth;
                m->found = true;
        } else if (m->record_depth >= 0 && m->cap_field < 0) {
                int f = field_of(m, r, depth);
                if (f >= 0) {
                        m->cap_field = f;
                        m->cap_depth = depth;
                        m->text.n = 0;
                }
        }
        if (xmlTextReaderIsEmptyElement(r) && m->cap_field >= 0 && m->cap_depth == depth)
                end_capture(m);
}

/* Returns true when the record has ended (nothing more to read). */
static bool on_node(struct marc *m, xmlTextReaderPtr r)
{
        int type = xmlTextReaderNodeType(r);
        int depth = xmlTextReaderDepth(r);
        if (depth < 0 || depth >= MAX_DEPTH)
                return false;
        switch (type) {
        case XML_READER_TYPE_ELEMENT:
                on_element(m, r, depth);
                return m->record_depth >= 0 && xmlTextReaderIsEmptyElement(r) &&
                       depth == m->record_depth;
        case XML_READER_TYPE_END_ELEMENT:
                if (m->cap_field >= 0 && depth == m->cap_depth)
                        end_capture(m);
                return m->record_depth >= 0 && depth == m->record_depth;
        case XML_READER_TYPE_TEXT:
        case XML_READER_TYPE_CDATA:
        case XML_READER_TYPE_WHITESPACE:
        case XML_READER_TYPE_SIGNIFICANT_WHITESPACE:
                if (m->cap_field >= 0 && depth == m->cap_depth + 1) {
                        const char *v = (const char *)xmlTextReaderConstValue(r);
                        if (v)
                                m->too_large |=
                                    !str_add(&m->text, v, strlen(v), CONTENTS_MAX_MARC_TEXT);
                }
                return false;
        default:
                return false;
        }
}

static void on_error(void *arg, xmlErrorPtr e)
{
        struct marc *m = arg;
        if (!m->err && e && e->message)
                m->err = strdup(e->message);
}

static void reset(struct marc *m)
{
        for (int i = 0; i < NFIELDS; i++) {
                m->settled[i] = m->has[i] = false;
                m->val[i].n = 0;
        }
        m->found = m->too_large = false;
        m->record_depth = -1;
        m->cap_field = -1;
        m->text.n = 0;
        free(m->err);
        m->err = NULL;
}

int marc_parse(struct marc *m, marc_read_fn read, void *arg, const char **why, char *detail,
               size_t dcap)
{
        reset(m);
        *why = NULL;
        detail[0] = 0;
        xmlTextReaderPtr r = xmlReaderForIO(read, NULL, arg, NULL, NULL,
                                            XML_PARSE_NONET | XML_PARSE_NOERROR |
                                                XML_PARSE_NOWARNING | XML_PARSE_NOCDATA);
        if (!r) {
                *why = "out of memory";
                return 1;
        }
        xmlTextReaderSetStructuredErrorHandler(r, on_error, m);
        int rc;
        bool ended = false;
        while (!ended && (rc = xmlTextReaderRead(r)) == 1)
                ended = on_node(m, r);
        if (!ended && rc < 0) {
                *why = "METS not well-formed";
                snprintf(detail, dcap, "%s", m->err ? m->err : "parse error");
                /* strip libxml2's trailing newline */
                size_t n = strlen(detail);
                if (n && detail[n - 1] == '\n')
                        detail[n - 1] = 0;
        } else if (!m->found) {
                *why = "no MARC record";
        } else if (m->too_large) {
                *why = "MARC value too large";
        }
        xmlFreeTextReader(r);
        return *why ? 1 : 0;
}

static json_t *jstr(const struct marc *m, int f)
{
        return m->has[f] ? json_stringn(m->val[f].p, m->val[f].n) : json_null();
}

/* 008 positions [from, from+n) in characters, after str.strip(). */
static json_t *pos008(const char *s, size_t len, size_t from, size_t n, bool digits)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i = 0, k = 0, cl, b = 0, e = 0;
        for (; i < len && k < from + n; i += cl, k++) {
                cp_at(u + i, &cl);
                if (k == from)
                        b = i;
        }
        e = i;
        if (k < from + n)
                return json_null();
        if (digits) {
                /* ASCII digits (Python's isdigit() also takes other scripts' digits). */
                for (size_t j = b; j < e; j++)
                        if (s[j] < '0' || s[j] > '9')
                                return json_null();
                if (memmem(s + b, e - b, "999", 3))
                        return json_null();
        }
        return json_stringn(s + b, e - b);
}

static size_t chars(const char *s, size_t len)
{
        size_t k = 0;
        for (size_t i = 0; i < len; i++)
                k += ((unsigned char)s[i] & 0xc0) != 0x80;
        return k;
}

static json_t *oclc(const struct marc *m)
{
        if (!m->has[F_035A])
                return json_null();
        struct str out = {0};
        const char *p = m->val[F_035A].p, *end = p + m->val[F_035A].n;
        while (p <= end) {
                const char *q = memmem(p, (size_t)(end - p), ", ", 2);
                if (!q)
                        q = end;
                size_t b, e;
                py_strip(p, (size_t)(q - p), &b, &e);
                if (e > b && memmem(p + b, e - b, "(OCoLC)", 7)) {
                        if (out.n)
                                str_add(&out, ", ", 2, SIZE_MAX);
                        str_add(&out, p + b, e - b, SIZE_MAX);
                }
                p = q + 2;
        }
        json_t *j = out.n ? json_stringn(out.p, out.n) : json_null();
        free(out.p);
        return j;
}

static json_t *to_json(const struct marc *m)
{
        json_t *o = json_object();
        json_t *d1 = json_null(), *d2 = json_null(), *dt = json_null(), *lang = json_null();
        const struct str *f8 = &m->val[F_008];
        if (m->has[F_008] && chars(f8->p, f8->n) >= 40) {
                json_decref(d1);
                json_decref(d2);
                json_decref(dt);
                json_decref(lang);
                d1 = pos008(f8->p, f8->n, 7, 4, true);
                d2 = pos008(f8->p, f8->n, 11, 4, true);
                dt = pos008(f8->p, f8->n, 6, 1, false);
                if (json_string_length(dt) == 1 && json_string_value(dt)[0] == ' ') {
                        json_decref(dt);
                        dt = json_null();
                }
                lang = pos008(f8->p, f8->n, 35, 3, false);
                if (json_is_string(lang) && !strcmp(json_string_value(lang), "   ")) {
                        json_decref(lang);
                        lang = json_null();
                }
        }
        json_t *v[] = {jstr(m, F_001),
                       d1,
                       d2,
                       dt,
                       lang,
                       jstr(m, F_010A),
                       jstr(m, F_245A),
                       jstr(m, F_245B),
                       jstr(m, F_100A),
                       jstr(m, F_110A),
                       jstr(m, F_111A),
                       jstr(m, F_050A),
                       jstr(m, F_020A),
                       jstr(m, F_650A),
                       jstr(m, F_655A),
                       jstr(m, F_500A),
                       oclc(m)};
        for (size_t i = 0; contents_marc_keys[i]; i++)
                json_object_set_new(o, contents_marc_keys[i], v[i] ? v[i] : json_null());
        return o;
}

int marc_write(const struct marc *m, struct out_file *f)
{
        json_t *o = to_json(m);
        char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_INDENT(2));
        json_decref(o);
        if (!s)
                return -ENOMEM;
        size_t n = strlen(s);
        s[n] = '\n'; /* over the NUL: the length is known */
        int r = contents_out_write(f, s, n + 1);
        free(s);
        return r;
}
