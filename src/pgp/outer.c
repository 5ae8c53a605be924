/* The message's own packets (RFC 9580 5): markers and public-key packets skipped,
 * symmetric-key packets (keys.c) and one encrypted data packet, SEIPD v1, whose body is
 * the encrypted stream (mdc.c). Errors here end the message at once. */
#include "pgp_int.h"

#include <string.h>

static int seipd_first(struct pgp_dec *d, uint8_t version)
{
        struct pgp_msg *m = &d->m;
        m->seipd_ver = true;
        if (version != 1)
                return pgp_fail(d, PGP_EUNSUPPORTED, "unsupported encrypted data packet version %d",
                                version);
        if (m->ncand)
                return 0;
        if (m->saw_skesk)
                return pgp_fail(d, PGP_EBADPASS, "wrong passphrase (session key check failed)");
        if (m->saw_pkesk)
                return pgp_fail(d, PGP_EPUBKEY, "encrypted to a public key only, not a passphrase");
        return pgp_fail(d, PGP_ECORRUPT, "encrypted data without a session key packet");
}

/* Ciphertext after the version byte: first the quick-check block, then the stream. */
static int seipd_cipher(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct pgp_msg *m = &d->m;
        if (!m->keyed) {
                /* Every candidate's check fits in PGP_QC_LEN; any valid message is longer. */
                size_t k = PGP_QC_LEN - m->qclen < n ? PGP_QC_LEN - m->qclen : n;
                memcpy(m->qc + m->qclen, p, k);
                m->qclen += k;
                p += k;
                n -= k;
                if (m->qclen < PGP_QC_LEN)
                        return 0;
                int r = pgp_keys_choose(d);
                if (r)
                        return r;
        }
        return pgp_mdc_decrypt(d, p, n);
}

/* Small pieces (a stream cut in tiny partial lengths) are gathered first, so CFB, the
 * MDC and the inner packets see runs of up to PGP_GATHER bytes. */
static int seipd_body(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct pgp_msg *m = &d->m;
        int r;
        if (!m->seipd_ver) {
                if ((r = seipd_first(d, p[0])))
                        return r;
                p++;
                n--;
        }
        /* The quick check is never gathered: whether the passphrase is wrong must not
         * depend on how the input was cut. */
        if (!m->keyed)
                return seipd_cipher(d, p, n);
        return pgp_gather_put(d, &d->gc, p, n, seipd_cipher);
}

static int seipd_end(struct pgp_dec *d)
{
        int r;
        d->m.seipd_done = true;
        if ((r = pgp_gather_flush(d, &d->gc, seipd_cipher)) || (r = pgp_mdc_check(d)))
                return r;
        return pgp_inner_end(d);
}

static int outer_start(struct pgp_dec *d, int tag)
{
        struct pgp_msg *m = &d->m;
        bool first = !m->any_packet;
        m->any_packet = true;
        m->okind = PGP_K_SKIP;
        if (m->seipd_done)
                return pgp_fail(d, PGP_ECORRUPT, "packet (tag %d) after the encrypted data", tag);
        /* Encrypted messages open with a key or marker packet; anything else there is far
         * more likely to be some other file than an OpenPGP message. */
        if (first && tag != 1 && tag != 3 && tag != 10 && tag != 2 && tag != 4 && tag != 8 &&
            tag != 11)
                return pgp_fail(d, PGP_ENOTPGP, "not an OpenPGP message (packet tag %d first)",
                                tag);
        switch (tag) {
        case 1:
                m->saw_pkesk = true;
                return 0;
        case 10: /* marker */
                return 0;
        case 3:
                m->okind = PGP_K_SKESK;
                m->pktlen = 0;
                return 0;
        case 18:
                m->okind = PGP_K_SEIPD;
                return 0;
        case 9:
                return pgp_fail(d, PGP_ENOMDC,
                                "encrypted data without integrity protection (packet tag 9, "
                                "no MDC)");
        case 20:
                return pgp_fail(d, PGP_EUNSUPPORTED,
                                "unsupported AEAD encrypted data (packet tag 20)");
        case 2:
        case 4:
        case 8:
        case 11:
                return pgp_fail(d, PGP_EUNSUPPORTED, "not an encrypted message (packet tag %d)",
                                tag);
        default:
                return pgp_fail(d, PGP_ECORRUPT, "unexpected packet tag %d", tag);
        }
}

static int outer_body(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct pgp_msg *m = &d->m;
        if (m->okind == PGP_K_SEIPD)
                return seipd_body(d, p, n);
        if (m->okind != PGP_K_SKESK)
                return 0;
        if (n > PGP_SKESK_MAX - m->pktlen)
                return pgp_fail(d, PGP_ECORRUPT, "symmetric-key packet too long");
        memcpy(m->pkt + m->pktlen, p, n);
        m->pktlen += n;
        return 0;
}

int pgp_outer_end(struct pgp_dec *d)
{
        int k = d->m.okind;
        d->m.okind = PGP_K_NONE;
        if (k == PGP_K_SKESK)
                return pgp_skesk_end(d);
        if (k == PGP_K_SEIPD)
                return seipd_end(d);
        return 0;
}

static int bad_ctb(struct pgp_dec *d, uint8_t b)
{
        if (d->m.any_packet)
                return pgp_fail(d, PGP_ECORRUPT, "bad packet header");
        if (b == '-')
                return pgp_fail(d, PGP_ENOTPGP,
                                "ASCII-armored input; run it through gpg --dearmor");
        return pgp_fail(d, PGP_ENOTPGP, "not an OpenPGP message (first byte 0x%02x)", b);
}

int pgp_feed(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct pgp_msg *m = &d->m;
        m->consumed = 0;
        if (m->err)
                return m->err;
        int r = m->want_key ? pgp_key_resume(d) : 0;
        if (r)
                return r;
        const uint8_t *start = p;
        for (;;) {
                const uint8_t *b = NULL;
                size_t bl = 0;
                int e = pgp_rd_step(&m->ro, &p, &n, &b, &bl);
                if (e == PGP_RD_NEED)
                        break;
                if (e < 0)
                        r = bad_ctb(d, p[-1]);
                else if (e == PGP_RD_HDR)
                        r = outer_start(d, m->ro.tag);
                else if (e == PGP_RD_END)
                        r = pgp_outer_end(d);
                else if ((r = outer_body(d, b, bl)) == 0 && m->okind == PGP_K_SEIPD)
                        r = pgp_gather_more(d, &d->gc, seipd_cipher, &m->ro, &p, &n);
                if (r)
                        break;
        }
        m->consumed = (size_t)(p - start);
        m->in += m->consumed;
        return r;
}

int pgp_finish(struct pgp_dec *d)
{
        struct pgp_msg *m = &d->m;
        if (m->err)
                return m->err;
        /* A packet waiting for its key has no encrypted data after it: the checks below
         * call that truncated, with or without the key. */
        if (!m->any_packet)
                return pgp_fail(d, PGP_ENOTPGP, "not an OpenPGP message (empty input)");
        int e = pgp_rd_eof(&m->ro);
        if (e < 0)
                return pgp_fail(d, PGP_ETRUNC, "input ends inside a packet (tag %d): truncated",
                                m->ro.tag);
        if (e > 0 && (e = pgp_outer_end(d)) < 0)
                return e;
        if (!m->seipd_done && m->saw_pkesk && !m->saw_skesk)
                return pgp_fail(d, PGP_EPUBKEY, "encrypted to a public key only, not a passphrase");
        if (!m->seipd_done)
                return pgp_fail(d, PGP_ETRUNC, "no encrypted data packet: truncated");
        return 0;
}
