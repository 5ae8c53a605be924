/* S3's XML, by libxml2: answers parsed as they arrive (push parser), the one document we
 * send built by its writer, so that escaping is never ours to get wrong.
 *
 * Answers come from a server we do not trust: no network access, no DTD (a document with
 * one is refused, which rules out entity tricks), no error printing, at most S3_XML_MAX
 * bytes. Elements are matched by local name: S3 puts its answers in a namespace, other
 * servers do not. */
#include "s3_int.h"

#include <errno.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARSE_OPTIONS                                                                              \
        (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOBLANKS |          \
         XML_PARSE_NOCDATA)

void s3_xml_init(void)
{
        xmlInitParser();
}

void s3_xml_reset(struct s3_xml *x)
{
        if (x->ctxt) {
                xmlFreeDoc(x->ctxt->myDoc);
                xmlFreeParserCtxt(x->ctxt);
        }
        xmlFreeDoc(x->doc);
        x->ctxt = NULL;
        x->doc = NULL;
        x->fed = 0;
}

int s3_xml_feed(struct s3_xml *x, const char *p, size_t n)
{
        if (!x->ctxt && !x->doc) {
                /* Blanks before the XML declaration would make it ill-formed. */
                while (n && strchr(" \t\r\n", *p)) {
                        p++;
                        n--;
                }
                if (!n)
                        return 0;
                x->ctxt = xmlCreatePushParserCtxt(NULL, NULL, NULL, 0, NULL);
                if (!x->ctxt)
                        return -ENOMEM;
                xmlCtxtUseOptions(x->ctxt, PARSE_OPTIONS);
        }
        if (x->doc || n > S3_XML_MAX - x->fed)
                return -EMSGSIZE;
        x->fed += n;
        /* Errors are read once, from wellFormed, at the end. */
        (void)xmlParseChunk(x->ctxt, p, (int)n, 0);
        return 0;
}

int s3_xml_end(struct s3_xml *x)
{
        if (x->doc)
                return 0;
        if (!x->ctxt)
                return -ENODATA;
        (void)xmlParseChunk(x->ctxt, NULL, 0, 1);
        xmlDocPtr doc = x->ctxt->myDoc;
        bool ok = x->ctxt->wellFormed && doc && !doc->intSubset && xmlDocGetRootElement(doc);
        x->ctxt->myDoc = NULL;
        xmlFreeParserCtxt(x->ctxt);
        x->ctxt = NULL;
        if (!ok) {
                xmlFreeDoc(doc);
                return -EBADMSG;
        }
        x->doc = doc;
        return 0;
}

const char *s3_xml_root(const struct s3_xml *x)
{
        xmlNodePtr r = x->doc ? xmlDocGetRootElement(x->doc) : NULL;
        return r ? (const char *)r->name : "";
}

static xmlNodePtr child(xmlNodePtr parent, const char *name)
{
        for (xmlNodePtr c = parent ? parent->children : NULL; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name))
                        return c;
        return NULL;
}

static int text_of(xmlNodePtr n, char *out, size_t outlen)
{
        xmlChar *t = n ? xmlNodeGetContent(n) : NULL;
        if (!t)
                return -ENOENT;
        snprintf(out, outlen, "%s", (const char *)t);
        xmlFree(t);
        return 0;
}

int s3_xml_child(const struct s3_xml *x, const char *name, char *out, size_t outlen)
{
        out[0] = 0;
        return text_of(child(x->doc ? xmlDocGetRootElement(x->doc) : NULL, name), out, outlen);
}

/* S3's "url" encoding of keys in listings: form-style, '+' for a space. */
static int url_decode(char *s, size_t outlen)
{
        for (char *p = s; *p; p++)
                if (*p == '+')
                        *p = ' ';
        int n;
        char *d = curl_easy_unescape(NULL, s, 0, &n);
        if (!d)
                return -ENOMEM;
        /* A decoded NUL would cut the key: such a key is not one of ours anyway. */
        snprintf(s, outlen, "%s", d);
        curl_free(d);
        return 0;
}

int s3_xml_uploads(const struct s3_xml *x, int (*fn)(void *ctx, const char *key, const char *id),
                   void *ctx)
{
        char enc[16], key[S3_KEY_MAX * 3 + 1], id[S3_ID_MAX + 1];
        xmlNodePtr root = x->doc ? xmlDocGetRootElement(x->doc) : NULL;
        bool url =
            text_of(child(root, "EncodingType"), enc, sizeof enc) == 0 && !strcmp(enc, "url");
        for (xmlNodePtr u = root ? root->children : NULL; u; u = u->next) {
                if (u->type != XML_ELEMENT_NODE || strcmp((const char *)u->name, "Upload"))
                        continue;
                if (text_of(child(u, "Key"), key, sizeof key) < 0 ||
                    text_of(child(u, "UploadId"), id, sizeof id) < 0)
                        continue;
                if (url && url_decode(key, sizeof key) < 0)
                        return -ENOMEM;
                int r = fn(ctx, key, id);
                if (r)
                        return r;
        }
        return 0;
}

int s3_xml_objects(const struct s3_xml *x, int (*fn)(void *ctx, const char *key, uint64_t size),
                   void *ctx)
{
        char enc[16], key[S3_KEY_MAX * 3 + 1], size[32];
        xmlNodePtr root = x->doc ? xmlDocGetRootElement(x->doc) : NULL;
        bool url =
            text_of(child(root, "EncodingType"), enc, sizeof enc) == 0 && !strcmp(enc, "url");
        for (xmlNodePtr c = root ? root->children : NULL; c; c = c->next) {
                if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "Contents"))
                        continue;
                if (text_of(child(c, "Key"), key, sizeof key) < 0)
                        continue;
                if (url && url_decode(key, sizeof key) < 0)
                        return -ENOMEM;
                char *end = size;
                unsigned long long n = 0;
                /* Digits only: strtoull takes blanks and a sign, and wraps "-5" round to
                 * 2^64 - 5; past 64 bits it gives ULLONG_MAX, the "unreadable" value. */
                if (text_of(child(c, "Size"), size, sizeof size) == 0 && size[0] >= '0' &&
                    size[0] <= '9')
                        n = strtoull(size, &end, 10);
                int r = fn(ctx, key, *end || end == size ? UINT64_MAX : (uint64_t)n);
                if (r)
                        return r;
        }
        return 0;
}

int s3_xml_next_key_marker(const struct s3_xml *x, char *out, size_t outlen)
{
        char enc[16];
        int err = s3_xml_child(x, "NextKeyMarker", out, outlen);
        if (!err && s3_xml_child(x, "EncodingType", enc, sizeof enc) == 0 && !strcmp(enc, "url"))
                err = url_decode(out, outlen);
        return err;
}

/* ---- the CompleteMultipartUpload document ------------------------------------------ */

int s3_doc_complete(struct s3_doc *d, unsigned n, const char (*etags)[HTTP_ETAG_MAX],
                    const uint8_t (*sha256)[32])
{
        s3_doc_free(d);
        xmlBufferPtr buf = xmlBufferCreate();
        xmlTextWriterPtr w = buf ? xmlNewTextWriterMemory(buf, 0) : NULL;
        int bad = !w || xmlTextWriterStartElement(w, BAD_CAST "CompleteMultipartUpload") < 0;
        for (unsigned i = 0; i < n && !bad; i++) {
                char b64[45];
                EVP_EncodeBlock((unsigned char *)b64, sha256[i], 32);
                bad = xmlTextWriterStartElement(w, BAD_CAST "Part") < 0 ||
                      xmlTextWriterWriteFormatElement(w, BAD_CAST "PartNumber", "%u", i + 1) < 0 ||
                      xmlTextWriterWriteFormatElement(w, BAD_CAST "ETag", "\"%s\"", etags[i]) < 0 ||
                      xmlTextWriterWriteElement(w, BAD_CAST "ChecksumSHA256", BAD_CAST b64) < 0 ||
                      xmlTextWriterEndElement(w) < 0;
        }
        bad = bad || xmlTextWriterEndElement(w) < 0 || xmlTextWriterFlush(w) < 0;
        if (w)
                xmlFreeTextWriter(w);
        if (bad) {
                if (buf)
                        xmlBufferFree(buf);
                return -ENOMEM;
        }
        d->buf = buf;
        return 0;
}

const char *s3_doc_data(const struct s3_doc *d, size_t *len)
{
        *len = (size_t)xmlBufferLength(d->buf);
        return (const char *)xmlBufferContent(d->buf);
}

void s3_doc_free(struct s3_doc *d)
{
        if (d->buf)
                xmlBufferFree(d->buf);
        d->buf = NULL;
}
