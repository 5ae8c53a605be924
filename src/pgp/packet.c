/* Packet framing (RFC 9580 4.2) as a byte stream: old- and new-format headers, partial
 * body lengths, and old-format "until the end" lengths, in any chunking. */
#include "pgp_int.h"

#include <string.h>

enum { S_CTB, S_LEN, S_BODY };

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void rd_length(struct pgp_rd *r)
{
        const uint8_t *l = r->len;
        if (!r->newfmt)
                r->remain = r->nlen == 1   ? l[0]
                            : r->nlen == 2 ? (uint32_t)l[0] << 8 | l[1]
                                           : be32(l);
        else if (l[0] < 192)
                r->remain = l[0];
        else if (l[0] < 224)
                r->remain = ((uint32_t)(l[0] - 192) << 8) + l[1] + 192;
        else if (l[0] == 255)
                r->remain = be32(l + 1);
        else
                r->remain = (uint64_t)1 << (l[0] & 0x1f);
        r->partial = r->newfmt && l[0] >= 224 && l[0] < 255;
}

/* Returns 0 to read on, PGP_RD_HDR when the first header is complete, -1 on a bad CTB. */
static int rd_byte(struct pgp_rd *r, uint8_t b)
{
        static const uint8_t old_len[4] = {1, 2, 4, 0};
        if (r->state == S_CTB) {
                if (!(b & 0x80))
                        return -1;
                r->newfmt = b & 0x40;
                r->tag = r->newfmt ? b & 0x3f : (b >> 2) & 15;
                r->nlen = r->newfmt ? 0 : old_len[b & 3];
                r->hlen = 0;
                r->partial = r->cont = false;
                r->indet = !r->newfmt && (b & 3) == 3;
                r->state = r->indet ? S_BODY : S_LEN;
                return r->indet ? PGP_RD_HDR : 0;
        }
        r->len[r->hlen++] = b;
        if (r->newfmt && r->hlen == 1)
                r->nlen = b < 192 ? 1 : b < 224 ? 2 : b == 255 ? 5 : 1;
        if (r->hlen < r->nlen)
                return 0;
        rd_length(r);
        r->state = S_BODY;
        return r->cont ? 0 : PGP_RD_HDR;
}

int pgp_rd_step(struct pgp_rd *r, const uint8_t **p, size_t *n, const uint8_t **body, size_t *blen)
{
        for (;;) {
                if (r->state == S_BODY && !r->indet && r->remain == 0) {
                        if (!r->partial) {
                                r->state = S_CTB;
                                return PGP_RD_END;
                        }
                        r->state = S_LEN;
                        r->hlen = r->nlen = 0;
                        r->cont = true;
                }
                if (!*n)
                        return PGP_RD_NEED;
                if (r->state == S_BODY) {
                        size_t k = *n;
                        if (!r->indet && k > r->remain)
                                k = (size_t)r->remain;
                        *body = *p;
                        *blen = k;
                        *p += k;
                        *n -= k;
                        r->remain -= r->indet ? 0 : k;
                        return PGP_RD_BODY;
                }
                int e = rd_byte(r, **p);
                ++*p;
                --*n;
                if (e)
                        return e;
        }
}

size_t pgp_rd_copy(struct pgp_rd *r, const uint8_t **p, size_t *n, uint8_t *dst, size_t cap)
{
        size_t got = 0;
        while (got < cap && *n) {
                if (r->state == S_BODY && (r->indet || r->remain)) {
                        size_t k = *n < cap - got ? *n : cap - got;
                        if (!r->indet && k > r->remain)
                                k = (size_t)r->remain;
                        memcpy(dst + got, *p, k);
                        got += k;
                        *p += k;
                        *n -= k;
                        r->remain -= r->indet ? 0 : k;
                        continue;
                }
                /* A one-octet partial or final length, followed by a small piece: what
                 * rd_byte would do with it, inline. */
                uint8_t b = **p;
                if (r->state != S_BODY || !r->partial || (b >= 192 && b < 224) || b == 255)
                        break;
                uint64_t len = b < 192 ? b : (uint64_t)1 << (b & 0x1f);
                if (len >= PGP_SMALL)
                        break;
                ++*p;
                --*n;
                r->remain = len;
                r->partial = b >= 224;
        }
        return got;
}

int pgp_rd_eof(const struct pgp_rd *r)
{
        if (r->state == S_CTB)
                return 0;
        return r->state == S_BODY && r->indet ? 1 : -1;
}
