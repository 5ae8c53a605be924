/* The packets inside the decrypted stream: an optional compressed data packet (RFC 9580
 * 5.6) around the literal data packet (5.9), whose contents go to the sink. Small pieces
 * (partial lengths of a few bytes) are gathered before they are inflated or written, so
 * a stream of 1-byte pieces costs a copy per byte, not an inflate call or a write(2). */
#include "pgp_int.h"

#include <string.h>

static int sink_write(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        d->m.out += n;
        int r = d->sink(d->sink_ctx, p, n);
        if (r < 0) {
                d->m.sink_errno = -r;
                return pgp_fail(d, PGP_ESINK, "writing the plaintext: %s", strerror(-r));
        }
        return 0;
}

static int out_put(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        return pgp_gather_put(d, &d->go, p, n, sink_write);
}

static int lit_body(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct pgp_msg *m = &d->m;
        /* Format, name length, name, date: the header gpg does not write out either. */
        for (; n && m->lit_hpos < m->lit_hlen; m->lit_hpos++, p++, n--)
                if (m->lit_hpos == 1)
                        m->lit_hlen = 6 + p[0];
        return n ? out_put(d, p, n) : 0;
}

static int level_feed(struct pgp_dec *d, struct pgp_rd *r, int *kind, const uint8_t *p, size_t n,
                      bool outer);
static int level_eof(struct pgp_dec *d, struct pgp_rd *r, int *kind, const char *where);

static int comp_inflate(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct pgp_msg *m = &d->m;
        /* Bytes after the end of the compressed stream are ignored, as gpg does. */
        while (!m->comp_done) {
                size_t used, made;
                const char *why = NULL;
                int r = decomp_step(d->z, p, n, &used, d->zout, PGP_ZOUT, &made, &why);
                if (r < 0)
                        return pgp_inner_fail(d, PGP_ECORRUPT, "compressed data: %s", why);
                p += used;
                n -= used;
                m->comp_done = r == 1;
                if (made && (r = level_feed(d, &m->rz, &m->zkind, d->zout, made, false)) < 0)
                        return r;
                if ((!n && made < PGP_ZOUT) || (!used && !made))
                        break;
        }
        return 0;
}

static int comp_end(struct pgp_dec *d)
{
        struct pgp_msg *m = &d->m;
        int r;
        if (m->comp_algo < 0)
                return pgp_inner_fail(d, PGP_ECORRUPT, "empty compressed data packet");
        if (m->comp_algo && (r = pgp_gather_flush(d, &d->gz, comp_inflate)) < 0)
                return r;
        if (m->comp_algo && !m->comp_done)
                return pgp_inner_fail(d, PGP_ECORRUPT, "compressed data ends early");
        return level_eof(d, &m->rz, &m->zkind, "compressed data");
}

static int comp_body(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct pgp_msg *m = &d->m;
        if (m->comp_algo < 0) {
                m->comp_algo = p[0];
                if (m->comp_algo && decomp_start(d->z, m->comp_algo))
                        return pgp_inner_fail(d, PGP_EUNSUPPORTED,
                                              "unsupported compression algorithm %d", p[0]);
                p++;
                n--;
        }
        if (!m->comp_algo)
                return level_feed(d, &m->rz, &m->zkind, p, n, false);
        return pgp_gather_put(d, &d->gz, p, n, comp_inflate);
}

static int pkt_start(struct pgp_dec *d, int tag, int *kind, bool outer)
{
        struct pgp_msg *m = &d->m;
        if (m->lit_seen)
                return pgp_inner_fail(d, PGP_ECORRUPT, "packet (tag %d) after the literal data",
                                      tag);
        switch (tag) {
        case 11:
                m->lit_seen = true;
                m->lit_hpos = 0;
                m->lit_hlen = 2;
                *kind = PGP_K_LIT;
                return 0;
        case 8:
                if (!outer)
                        return pgp_inner_fail(d, PGP_EUNSUPPORTED,
                                              "nested compressed data packets");
                m->comp_algo = -1;
                *kind = PGP_K_COMP;
                return 0;
        case 2:
        case 4:
                return pgp_inner_fail(d, PGP_EUNSUPPORTED, "signed messages (packet tag %d)", tag);
        default:
                return pgp_inner_fail(d, PGP_ECORRUPT,
                                      "unexpected packet tag %d in the decrypted data", tag);
        }
}

static int pkt_end(struct pgp_dec *d, int *kind)
{
        int k = *kind;
        *kind = PGP_K_NONE;
        if (k == PGP_K_COMP)
                return comp_end(d);
        if (k == PGP_K_LIT && d->m.lit_hpos < d->m.lit_hlen)
                return pgp_inner_fail(d, PGP_ECORRUPT, "literal data packet header cut short");
        return 0;
}

/* The packets that may hold the literal data: those of the decrypted stream (outer) and
 * those inside a compressed packet. */
static int level_feed(struct pgp_dec *d, struct pgp_rd *r, int *kind, const uint8_t *p, size_t n,
                      bool outer)
{
        for (;;) {
                const uint8_t *b = NULL;
                size_t bl = 0;
                int e = pgp_rd_step(r, &p, &n, &b, &bl);
                if (e == PGP_RD_NEED)
                        return 0;
                if (e < 0)
                        return pgp_inner_fail(d, PGP_ECORRUPT,
                                              "bad packet header in the decrypted data");
                if (e == PGP_RD_HDR)
                        e = pkt_start(d, r->tag, kind, outer);
                else if (e == PGP_RD_END)
                        e = pkt_end(d, kind);
                else if (*kind == PGP_K_LIT && (e = lit_body(d, b, bl)) == 0)
                        e = pgp_gather_more(d, &d->go, sink_write, r, &p, &n);
                else if (*kind == PGP_K_COMP && (e = comp_body(d, b, bl)) == 0)
                        e = pgp_gather_more(d, &d->gz, comp_inflate, r, &p, &n);
                if (e < 0)
                        return e;
        }
}

static int level_eof(struct pgp_dec *d, struct pgp_rd *r, int *kind, const char *where)
{
        int e = pgp_rd_eof(r);
        if (e < 0)
                return pgp_inner_fail(d, PGP_ECORRUPT, "%s ends inside a packet", where);
        return e ? pkt_end(d, kind) : 0;
}

int pgp_inner_feed(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        return level_feed(d, &d->m.ri, &d->m.ikind, p, n, true);
}

int pgp_inner_end(struct pgp_dec *d)
{
        struct pgp_msg *m = &d->m;
        if (!m->ierr)
                level_eof(d, &m->ri, &m->ikind, "decrypted data");
        if (!m->ierr && !m->lit_seen)
                pgp_inner_fail(d, PGP_ECORRUPT, "no literal data packet in the message");
        if (m->ierr)
                return pgp_fail(d, m->ierr, "%s", m->idetail);
        return pgp_gather_flush(d, &d->go, sink_write);
}
