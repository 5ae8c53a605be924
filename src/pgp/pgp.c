/* The decryptor: packet stream (outer: session key and encrypted data packets; inner:
 * compressed and literal packets), MDC, errors. See include/quire/pgp.h for the use. */
#include "quire/pgp/pgp.h"

#include "pgp_int.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Plaintext is produced a slice at a time so keystream, XOR, SHA-1 and the sink all work
 * on data still in L2. */
#define SLICE     (128u << 10)
#define ZOUT      (128u << 10)
#define MDC_LEN   22 /* 0xD3 0x14 + SHA-1: the last bytes of every SEIPD plaintext */
#define PASS_MAX  4096
#define SCRATCH   (64u << 10)
#define SKESK_MAX 128
#define MAX_CANDS 4
#define QC_LEN    (PGP_MAX_BLOCK + 2)
#define N_CIPHERS 14
#define N_HASHES  12
/* Slices in flight between the decrypting thread and the MDC thread. */
#define N_SLOTS 8
#define SLOT    (MDC_LEN + SLICE)

/* One packet reader per nesting level: turns bytes into header/body/end events,
 * whatever the chunking, with old- and new-format headers and partial lengths. */
enum { RD_NEED, RD_HDR, RD_BODY, RD_END };
enum { S_CTB, S_LEN, S_BODY };

struct rd {
        uint8_t state, tag, nlen, hlen;
        bool newfmt, partial, indet, cont;
        uint8_t len[5];
        uint64_t remain;
};

enum { K_NONE, K_SKIP, K_SKESK, K_SEIPD, K_COMP, K_LIT };

struct cand {
        uint8_t algo;
        uint8_t key[PGP_MAX_KEY];
};

/* Everything that belongs to one message; pgp_reset wipes it in one go. */
struct msg {
        int err, ierr, sink_errno;
        char detail[160], idetail[160];
        uint64_t in, out;
        struct rd ro, ri, rz;
        int okind, ikind, zkind;
        bool any_packet, saw_pkesk, saw_skesk, seipd_ver, keyed, seipd_done;
        uint8_t pkt[SKESK_MAX];
        size_t pktlen;
        struct cand cand[MAX_CANDS];
        int ncand;
        uint8_t qc[QC_LEN];
        size_t qclen, prefix_left, holdlen;
        uint8_t hold[MDC_LEN];
        int comp_algo; /* -1 until the packet's first byte arrives */
        bool comp_done, lit_seen;
        uint32_t lit_hpos, lit_hlen;
};

/* The optional MDC thread: SHA-1 is the slowest stage, so a lone stream can hash on a
 * second core while the first decrypts. Each slice is one queue entry (maybe empty); a
 * slot is rewritten only once its entry has been hashed. */
struct hasher {
        pthread_t th;
        pthread_mutex_t mu;
        pthread_cond_t work, done;
        struct {
                const uint8_t *p;
                size_t n;
        } q[N_SLOTS];
        uint64_t head, tail;
        bool on, quit, failed;
        const uint8_t *pend;
        size_t pend_n;
};

struct pgp_dec {
        uint8_t *ptbuf; /* N_SLOTS slots: MDC_LEN of headroom, then SLICE */
        uint8_t *zout;
        uint8_t *scratch;
        struct pz *pz;
        struct cfb cfb;
        EVP_MD_CTX *mdc, *s2k;
        EVP_MD *sha1;
        EVP_CIPHER *ciph[N_CIPHERS];
        EVP_MD *md[N_HASHES];
        uint64_t s2k_limit;
        pgp_sink_fn sink;
        void *sink_ctx;
        uint8_t pass[PASS_MAX];
        size_t passlen;
        struct hasher h;
        struct msg m;
        struct pgp_key_job offer; /* a key derived beside the decryptor, for this message */
};

__attribute__((format(printf, 3, 4))) static int fail(struct pgp_dec *d, int code, const char *fmt,
                                                      ...)
{
        if (!d->m.err) {
                d->m.err = code;
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(d->m.detail, sizeof d->m.detail, fmt, ap);
                va_end(ap);
        }
        return d->m.err;
}

/* Errors inside the decrypted data wait for the MDC: if the data was tampered with, that
 * is the reason to give, not the garbage it decrypted to. Decryption goes on so the MDC
 * can be checked; nothing more reaches the sink. */
__attribute__((format(printf, 3, 4))) static int inner_fail(struct pgp_dec *d, int code,
                                                            const char *fmt, ...)
{
        if (!d->m.ierr) {
                d->m.ierr = code;
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(d->m.idetail, sizeof d->m.idetail, fmt, ap);
                va_end(ap);
        }
        return code;
}

/* ---- packet reader ---- */

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void rd_length(struct rd *r)
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

/* Returns 0 to read on, RD_HDR when the first header is complete, -1 on a bad CTB. */
static int rd_byte(struct rd *r, uint8_t b)
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
                return r->indet ? RD_HDR : 0;
        }
        r->len[r->hlen++] = b;
        if (r->newfmt && r->hlen == 1)
                r->nlen = b < 192 ? 1 : b < 224 ? 2 : b == 255 ? 5 : 1;
        if (r->hlen < r->nlen)
                return 0;
        rd_length(r);
        r->state = S_BODY;
        return r->cont ? 0 : RD_HDR;
}

static int rd_step(struct rd *r, const uint8_t **p, size_t *n, const uint8_t **body, size_t *blen)
{
        for (;;) {
                if (r->state == S_BODY && !r->indet && r->remain == 0) {
                        if (!r->partial) {
                                r->state = S_CTB;
                                return RD_END;
                        }
                        r->state = S_LEN;
                        r->hlen = r->nlen = 0;
                        r->cont = true;
                }
                if (!*n)
                        return RD_NEED;
                if (r->state == S_BODY) {
                        size_t k = *n;
                        if (!r->indet && k > r->remain)
                                k = (size_t)r->remain;
                        *body = *p;
                        *blen = k;
                        *p += k;
                        *n -= k;
                        r->remain -= r->indet ? 0 : k;
                        return RD_BODY;
                }
                int e = rd_byte(r, **p);
                ++*p;
                --*n;
                if (e)
                        return e;
        }
}

/* At the end of the data around it: 0 between packets, 1 inside a packet whose length
 * is "until the end" (which now ends), -1 inside any other packet. */
static int rd_eof(const struct rd *r)
{
        if (r->state == S_CTB)
                return 0;
        return r->state == S_BODY && r->indet ? 1 : -1;
}

/* ---- literal data, compressed data ---- */

static int lit_body(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct msg *m = &d->m;
        /* Format, name length, name, date: the header gpg does not write out either. */
        for (; n && m->lit_hpos < m->lit_hlen; m->lit_hpos++, p++, n--)
                if (m->lit_hpos == 1)
                        m->lit_hlen = 6 + p[0];
        if (!n)
                return 0;
        m->out += n;
        int r = d->sink(d->sink_ctx, p, n);
        if (r < 0) {
                m->sink_errno = -r;
                return fail(d, PGP_ESINK, "writing the plaintext: %s", strerror(-r));
        }
        return 0;
}

static int level_feed(struct pgp_dec *d, struct rd *r, int *kind, const uint8_t *p, size_t n,
                      bool outer);

static int level_eof(struct pgp_dec *d, struct rd *r, int *kind, const char *where);

static int comp_end(struct pgp_dec *d)
{
        struct msg *m = &d->m;
        if (m->comp_algo < 0)
                return inner_fail(d, PGP_ECORRUPT, "empty compressed data packet");
        if (m->comp_algo && !m->comp_done)
                return inner_fail(d, PGP_ECORRUPT, "compressed data ends early");
        return level_eof(d, &m->rz, &m->zkind, "compressed data");
}

static int comp_start(struct pgp_dec *d, int algo)
{
        d->m.comp_algo = algo;
        if (algo && pz_start(d->pz, algo))
                return inner_fail(d, PGP_EUNSUPPORTED, "unsupported compression algorithm %d",
                                  algo);
        return 0;
}

static int comp_body(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct msg *m = &d->m;
        if (m->comp_algo < 0) {
                int r = comp_start(d, p[0]);
                if (r)
                        return r;
                p++;
                n--;
        }
        if (!m->comp_algo)
                return level_feed(d, &m->rz, &m->zkind, p, n, false);
        /* Bytes after the end of the compressed stream are ignored, as gpg does. */
        while (!m->comp_done) {
                size_t used, made;
                const char *why = NULL;
                int r = pz_step(d->pz, p, n, &used, d->zout, ZOUT, &made, &why);
                if (r < 0)
                        return inner_fail(d, PGP_ECORRUPT, "compressed data: %s", why);
                p += used;
                n -= used;
                m->comp_done = r == 1;
                if (made && (r = level_feed(d, &m->rz, &m->zkind, d->zout, made, false)) < 0)
                        return r;
                if ((!n && made < ZOUT) || (!used && !made))
                        break;
        }
        return 0;
}

static int pkt_start(struct pgp_dec *d, int tag, int *kind, bool outer)
{
        struct msg *m = &d->m;
        if (m->lit_seen)
                return inner_fail(d, PGP_ECORRUPT, "packet (tag %d) after the literal data", tag);
        switch (tag) {
        case 11:
                m->lit_seen = true;
                m->lit_hpos = 0;
                m->lit_hlen = 2;
                *kind = K_LIT;
                return 0;
        case 8:
                if (!outer)
                        return inner_fail(d, PGP_EUNSUPPORTED, "nested compressed data packets");
                m->comp_algo = -1;
                *kind = K_COMP;
                return 0;
        case 2:
        case 4:
                return inner_fail(d, PGP_EUNSUPPORTED, "signed messages (packet tag %d)", tag);
        default:
                return inner_fail(d, PGP_ECORRUPT, "unexpected packet tag %d in the decrypted data",
                                  tag);
        }
}

static int pkt_end(struct pgp_dec *d, int *kind)
{
        int k = *kind;
        *kind = K_NONE;
        if (k == K_COMP)
                return comp_end(d);
        if (k == K_LIT && d->m.lit_hpos < d->m.lit_hlen)
                return inner_fail(d, PGP_ECORRUPT, "literal data packet header cut short");
        return 0;
}

/* The packets that may hold the literal data: those of the decrypted stream (outer) and
 * those inside a compressed packet. */
static int level_feed(struct pgp_dec *d, struct rd *r, int *kind, const uint8_t *p, size_t n,
                      bool outer)
{
        for (;;) {
                const uint8_t *b = NULL;
                size_t bl = 0;
                int e = rd_step(r, &p, &n, &b, &bl);
                if (e == RD_NEED)
                        return 0;
                if (e < 0)
                        return inner_fail(d, PGP_ECORRUPT,
                                          "bad packet header in the decrypted data");
                if (e == RD_HDR)
                        e = pkt_start(d, r->tag, kind, outer);
                else if (e == RD_END)
                        e = pkt_end(d, kind);
                else if (*kind == K_LIT)
                        e = lit_body(d, b, bl);
                else
                        e = comp_body(d, b, bl);
                if (e < 0)
                        return e;
        }
}

static int level_eof(struct pgp_dec *d, struct rd *r, int *kind, const char *where)
{
        int e = rd_eof(r);
        if (e < 0)
                return inner_fail(d, PGP_ECORRUPT, "%s ends inside a packet", where);
        return e ? pkt_end(d, kind) : 0;
}

/* ---- decrypted stream: MDC hold-back and hash ---- */

static void *hasher_main(void *arg)
{
        struct pgp_dec *d = arg;
        struct hasher *h = &d->h;
        pthread_mutex_lock(&h->mu);
        for (;;) {
                while (h->tail == h->head && !h->quit)
                        pthread_cond_wait(&h->work, &h->mu);
                if (h->tail == h->head)
                        break;
                const uint8_t *p = h->q[h->tail % N_SLOTS].p;
                size_t n = h->q[h->tail % N_SLOTS].n;
                pthread_mutex_unlock(&h->mu);
                bool ok = !n || EVP_DigestUpdate(d->mdc, p, n);
                pthread_mutex_lock(&h->mu);
                h->failed |= !ok;
                h->tail++;
                pthread_cond_signal(&h->done);
        }
        pthread_mutex_unlock(&h->mu);
        return NULL;
}

/* Waits until at most `left` slices are still to hash. */
static void hasher_wait(struct hasher *h, uint64_t left)
{
        pthread_mutex_lock(&h->mu);
        while (h->head - h->tail > left)
                pthread_cond_wait(&h->done, &h->mu);
        pthread_mutex_unlock(&h->mu);
}

static void hasher_submit(struct hasher *h)
{
        pthread_mutex_lock(&h->mu);
        h->q[h->head % N_SLOTS].p = h->pend;
        h->q[h->head % N_SLOTS].n = h->pend_n;
        h->head++;
        h->pend_n = 0;
        pthread_cond_signal(&h->work);
        pthread_mutex_unlock(&h->mu);
}

/* The slot the next slice is decrypted into, once the hasher is done with it. */
static uint8_t *next_slot(struct pgp_dec *d)
{
        if (!d->h.on)
                return d->ptbuf;
        hasher_wait(&d->h, N_SLOTS - 1);
        return d->ptbuf + (d->h.head % N_SLOTS) * SLOT;
}

static int mdc_update(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        if (!d->h.on)
                return EVP_DigestUpdate(d->mdc, p, n) ? 0 : -1;
        d->h.pend = p;
        d->h.pend_n = n;
        return 0;
}

/* Everything queued is hashed: the MDC context is the caller's again. */
static int mdc_sync(struct pgp_dec *d)
{
        if (!d->h.on)
                return 0;
        hasher_wait(&d->h, 0);
        return d->h.failed ? -1 : 0;
}

static int plain_emit(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct msg *m = &d->m;
        if (mdc_update(d, p, n))
                return fail(d, PGP_ENOMEM, "SHA-1 failed");
        size_t k = n < m->prefix_left ? n : m->prefix_left;
        m->prefix_left -= k;
        if (n > k && !m->ierr && level_feed(d, &m->ri, &m->ikind, p + k, n - k, true) < 0)
                return m->err; /* 0 when the error waits for the MDC */
        return 0;
}

/* pt lies in ptbuf after MDC_LEN bytes of headroom: the held-back tail goes in front of it
 * so the hash and the sink see one contiguous run per slice. */
static int plain_feed(struct pgp_dec *d, uint8_t *pt, size_t n)
{
        struct msg *m = &d->m;
        size_t h = m->holdlen;
        if (h + n <= MDC_LEN) {
                memcpy(m->hold + h, pt, n);
                m->holdlen += n;
                return 0;
        }
        uint8_t *start = pt - h;
        memcpy(start, m->hold, h);
        size_t emit = h + n - MDC_LEN;
        memcpy(m->hold, start + emit, MDC_LEN);
        m->holdlen = MDC_LEN;
        return plain_emit(d, start, emit);
}

static int decrypt_run(struct pgp_dec *d, const uint8_t *c, size_t n)
{
        while (n) {
                size_t k = n < SLICE ? n : SLICE;
                uint8_t *pt = next_slot(d) + MDC_LEN;
                if (cfb_decrypt(&d->cfb, c, pt, k))
                        return fail(d, PGP_ENOMEM, "cipher failed");
                int r = plain_feed(d, pt, k);
                if (d->h.on)
                        hasher_submit(&d->h);
                if (r)
                        return r;
                c += k;
                n -= k;
        }
        return 0;
}

/* ---- session keys ---- */

static EVP_CIPHER *cipher_get(struct pgp_dec *d, const struct pgp_cipher *ci)
{
        if (!d->ciph[ci->id])
                d->ciph[ci->id] = pgp_cipher_fetch(ci);
        return d->ciph[ci->id];
}

static EVP_MD *md_get(struct pgp_dec *d, int id)
{
        if (id <= 0 || id >= N_HASHES)
                return NULL;
        if (!d->md[id])
                d->md[id] = pgp_md_fetch(id);
        return d->md[id];
}

static int cipher_usable(struct pgp_dec *d, int algo)
{
        const struct pgp_cipher *ci = pgp_cipher_by_id(algo);
        if (!ci)
                return fail(d, PGP_EUNSUPPORTED, "unknown cipher algorithm %d", algo);
        if (!cipher_get(d, ci))
                return fail(d, PGP_EUNSUPPORTED, "unsupported cipher algorithm %d (%s)", algo,
                            ci->name);
        return 0;
}

static int s2k_parse(struct pgp_dec *d, const uint8_t *b, size_t len, struct pgp_s2k *s,
                     size_t *off)
{
        if (len < 4)
                return fail(d, PGP_ECORRUPT, "symmetric-key packet too short");
        s->type = b[2];
        s->hash = b[3];
        size_t need = s->type == 0 ? 4 : s->type == 1 ? 12 : 13;
        if (s->type == 101)
                return fail(d, PGP_EUNSUPPORTED, "unsupported S2K type 101 (GnuPG extension)");
        if (s->type != 0 && s->type != 1 && s->type != 3)
                return fail(d, PGP_EUNSUPPORTED, "unsupported S2K type %d", s->type);
        if (len < need)
                return fail(d, PGP_ECORRUPT, "symmetric-key packet too short");
        if (s->type)
                memcpy(s->salt, b + 4, 8);
        if (s->type == 3)
                s->count = (uint32_t)(16 + (b[12] & 15)) << ((b[12] >> 4) + 6);
        if (!md_get(d, s->hash))
                return fail(d, PGP_EUNSUPPORTED, "unsupported S2K hash algorithm %d", s->hash);
        *off = need;
        return 0;
}

/* A session key inside the packet (gpg writes one when a message is also for a public
 * key). A wrong passphrase decrypts it to garbage: such a candidate is dropped, and the
 * quick check then reports the wrong passphrase. */
static int skesk_unwrap(struct pgp_dec *d, const struct pgp_cipher *ci, const uint8_t *kek,
                        const uint8_t *esk, size_t len, struct cand *c)
{
        uint8_t sk[1 + PGP_MAX_KEY];
        if (len > sizeof sk || cfb_init(&d->cfb, cipher_get(d, ci), kek, ci->blklen) ||
            cfb_decrypt(&d->cfb, esk, sk, len))
                return -1;
        const struct pgp_cipher *sci = pgp_cipher_by_id(sk[0]);
        int ok = sci && sci->keylen == len - 1 && cipher_get(d, sci);
        if (ok) {
                c->algo = sk[0];
                memcpy(c->key, sk + 1, len - 1);
        }
        explicit_bzero(sk, sizeof sk);
        return ok ? 0 : -1;
}

static bool offer_matches(const struct pgp_key_job *o, const struct pgp_s2k *s,
                          const struct pgp_cipher *ci)
{
        return o->ready && o->s2k_type == s->type && o->hash == s->hash && o->cipher == ci->id &&
               o->keylen == ci->keylen && (s->type == 0 || !memcmp(o->salt, s->salt, 8)) &&
               (s->type != 3 || o->count == s->count);
}

static int skesk_parse(struct pgp_dec *d)
{
        struct msg *m = &d->m;
        const uint8_t *b = m->pkt;
        struct pgp_s2k s = {0};
        size_t off = 0;
        if (m->pktlen >= 1 && b[0] != 4)
                return fail(d, PGP_EUNSUPPORTED, "unsupported symmetric-key packet version %d",
                            b[0]);
        int r = s2k_parse(d, b, m->pktlen, &s, &off);
        if (r || (r = cipher_usable(d, b[1])))
                return r;
        m->saw_skesk = true;
        if (m->ncand == MAX_CANDS)
                return 0;
        const struct pgp_cipher *ci = pgp_cipher_by_id(b[1]);
        uint8_t key[PGP_MAX_KEY];
        struct cand *c = &m->cand[m->ncand];
        if (offer_matches(&d->offer, &s, ci))
                memcpy(key, d->offer.key, ci->keylen);
        else if (pgp_s2k_derive(&s, d->md[s.hash], d->s2k, d->scratch, SCRATCH, d->pass, d->passlen,
                                key, ci->keylen, d->s2k_limit))
                return fail(d, PGP_ENOMEM, "S2K hash failed");
        if (off == m->pktlen) {
                c->algo = ci->id;
                memcpy(c->key, key, ci->keylen);
                m->ncand++;
        } else if (skesk_unwrap(d, ci, key, b + off, m->pktlen - off, c) == 0) {
                m->ncand++;
        }
        explicit_bzero(key, sizeof key);
        return 0;
}

/* The first block+2 plaintext bytes repeat their last two: a check that tells a wrong
 * passphrase from damaged data before any plaintext goes out. */
static int choose_key(struct pgp_dec *d)
{
        struct msg *m = &d->m;
        for (int i = 0; i < m->ncand; i++) {
                const struct pgp_cipher *ci = pgp_cipher_by_id(m->cand[i].algo);
                unsigned bs = ci->blklen;
                uint8_t p[QC_LEN];
                if (cfb_init(&d->cfb, d->ciph[ci->id], m->cand[i].key, bs) ||
                    cfb_decrypt(&d->cfb, m->qc, p, bs + 2))
                        return fail(d, PGP_ENOMEM, "cipher failed");
                bool ok = p[bs] == p[bs - 2] && p[bs + 1] == p[bs - 1];
                explicit_bzero(p, sizeof p);
                if (!ok)
                        continue;
                if (cfb_init(&d->cfb, d->ciph[ci->id], m->cand[i].key, bs) ||
                    !EVP_DigestInit_ex(d->mdc, d->sha1, NULL))
                        return fail(d, PGP_ENOMEM, "cipher failed");
                m->keyed = true;
                m->prefix_left = bs + 2;
                return decrypt_run(d, m->qc, m->qclen);
        }
        return fail(d, PGP_EBADPASS, "wrong passphrase (session key check failed)");
}

/* ---- outer packets ---- */

static int seipd_first(struct pgp_dec *d, uint8_t version)
{
        struct msg *m = &d->m;
        m->seipd_ver = true;
        if (version != 1)
                return fail(d, PGP_EUNSUPPORTED, "unsupported encrypted data packet version %d",
                            version);
        if (m->ncand)
                return 0;
        if (m->saw_skesk)
                return fail(d, PGP_EBADPASS, "wrong passphrase (session key check failed)");
        if (m->saw_pkesk)
                return fail(d, PGP_EPUBKEY, "encrypted to a public key only, not a passphrase");
        return fail(d, PGP_ECORRUPT, "encrypted data without a session key packet");
}

static int seipd_body(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct msg *m = &d->m;
        if (!m->seipd_ver) {
                int r = seipd_first(d, p[0]);
                if (r)
                        return r;
                p++;
                n--;
        }
        if (!m->keyed) {
                /* Every candidate's check fits in QC_LEN, and any valid message is longer. */
                size_t k = QC_LEN - m->qclen < n ? QC_LEN - m->qclen : n;
                memcpy(m->qc + m->qclen, p, k);
                m->qclen += k;
                p += k;
                n -= k;
                if (m->qclen < QC_LEN)
                        return 0;
                int r = choose_key(d);
                if (r)
                        return r;
        }
        return decrypt_run(d, p, n);
}

static int seipd_end(struct pgp_dec *d)
{
        struct msg *m = &d->m;
        uint8_t md[EVP_MAX_MD_SIZE];
        m->seipd_done = true;
        if (!m->keyed || m->holdlen < MDC_LEN)
                return fail(d, PGP_ECORRUPT, "encrypted data packet too short");
        if (m->hold[0] != 0xD3 || m->hold[1] != 0x14)
                return fail(d, PGP_EMDC, "integrity check failed: no MDC packet at the end");
        if (mdc_sync(d) || !EVP_DigestUpdate(d->mdc, m->hold, 2) ||
            !EVP_DigestFinal_ex(d->mdc, md, NULL))
                return fail(d, PGP_ENOMEM, "SHA-1 failed");
        if (memcmp(md, m->hold + 2, 20))
                return fail(d, PGP_EMDC,
                            "integrity check failed (MDC mismatch): data modified or "
                            "damaged");
        if (!m->ierr)
                level_eof(d, &m->ri, &m->ikind, "decrypted data");
        if (!m->ierr && !m->lit_seen)
                inner_fail(d, PGP_ECORRUPT, "no literal data packet in the message");
        return m->ierr ? fail(d, m->ierr, "%s", m->idetail) : 0;
}

static int outer_start(struct pgp_dec *d, int tag)
{
        struct msg *m = &d->m;
        bool first = !m->any_packet;
        m->any_packet = true;
        m->okind = K_SKIP;
        if (m->seipd_done)
                return fail(d, PGP_ECORRUPT, "packet (tag %d) after the encrypted data", tag);
        /* Encrypted messages open with a key or marker packet; anything else there is far
         * more likely to be some other file than an OpenPGP message. */
        if (first && tag != 1 && tag != 3 && tag != 10 && tag != 2 && tag != 4 && tag != 8 &&
            tag != 11)
                return fail(d, PGP_ENOTPGP, "not an OpenPGP message (packet tag %d first)", tag);
        switch (tag) {
        case 1:
                m->saw_pkesk = true;
                return 0;
        case 10: /* marker */
                return 0;
        case 3:
                m->okind = K_SKESK;
                m->pktlen = 0;
                return 0;
        case 18:
                m->okind = K_SEIPD;
                return 0;
        case 9:
                return fail(d, PGP_ENOMDC,
                            "encrypted data without integrity protection (packet tag 9, no MDC)");
        case 20:
                return fail(d, PGP_EUNSUPPORTED, "unsupported AEAD encrypted data (packet tag 20)");
        case 2:
        case 4:
        case 8:
        case 11:
                return fail(d, PGP_EUNSUPPORTED, "not an encrypted message (packet tag %d)", tag);
        default:
                return fail(d, PGP_ECORRUPT, "unexpected packet tag %d", tag);
        }
}

static int outer_body(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct msg *m = &d->m;
        if (m->okind == K_SEIPD)
                return seipd_body(d, p, n);
        if (m->okind != K_SKESK)
                return 0;
        if (n > SKESK_MAX - m->pktlen)
                return fail(d, PGP_ECORRUPT, "symmetric-key packet too long");
        memcpy(m->pkt + m->pktlen, p, n);
        m->pktlen += n;
        return 0;
}

static int outer_end(struct pgp_dec *d)
{
        int k = d->m.okind;
        d->m.okind = K_NONE;
        if (k == K_SKESK)
                return skesk_parse(d);
        if (k == K_SEIPD)
                return seipd_end(d);
        return 0;
}

static int bad_ctb(struct pgp_dec *d, uint8_t b)
{
        if (d->m.any_packet)
                return fail(d, PGP_ECORRUPT, "bad packet header");
        if (b == '-')
                return fail(d, PGP_ENOTPGP, "ASCII-armored input; run it through gpg --dearmor");
        return fail(d, PGP_ENOTPGP, "not an OpenPGP message (first byte 0x%02x)", b);
}

int pgp_feed(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        if (d->m.err)
                return d->m.err;
        d->m.in += n;
        for (;;) {
                const uint8_t *b = NULL;
                size_t bl = 0;
                int e = rd_step(&d->m.ro, &p, &n, &b, &bl);
                if (e == RD_NEED)
                        return 0;
                if (e < 0)
                        return bad_ctb(d, p[-1]);
                if (e == RD_HDR)
                        e = outer_start(d, d->m.ro.tag);
                else if (e == RD_END)
                        e = outer_end(d);
                else
                        e = outer_body(d, b, bl);
                if (e < 0)
                        return e;
        }
}

int pgp_finish(struct pgp_dec *d)
{
        struct msg *m = &d->m;
        if (m->err)
                return m->err;
        if (!m->any_packet)
                return fail(d, PGP_ENOTPGP, "not an OpenPGP message (empty input)");
        int e = rd_eof(&m->ro);
        if (e < 0)
                return fail(d, PGP_ETRUNC, "input ends inside a packet (tag %d): truncated",
                            m->ro.tag);
        if (e > 0 && (e = outer_end(d)) < 0)
                return e;
        if (!m->seipd_done && m->saw_pkesk && !m->saw_skesk)
                return fail(d, PGP_EPUBKEY, "encrypted to a public key only, not a passphrase");
        if (!m->seipd_done)
                return fail(d, PGP_ETRUNC, "no encrypted data packet: truncated");
        return 0;
}

/* ---- lifetime ---- */

int pgp_new(struct pgp_dec **out)
{
        struct pgp_dec *d = calloc(1, sizeof *d);
        if (!d)
                return PGP_ENOMEM;
        /* Only the first slot is touched unless the MDC thread is on. */
        d->ptbuf = malloc((size_t)N_SLOTS * SLOT);
        d->zout = malloc(ZOUT);
        d->scratch = malloc(SCRATCH);
        d->cfb.ecb = EVP_CIPHER_CTX_new();
        d->mdc = EVP_MD_CTX_new();
        d->s2k = EVP_MD_CTX_new();
        d->sha1 = pgp_md_fetch(2);
        if (!d->ptbuf || !d->zout || !d->scratch || !d->cfb.ecb || !d->mdc || !d->s2k || !d->sha1 ||
            pz_new(&d->pz)) {
                pgp_free(d);
                return PGP_ENOMEM;
        }
        d->m.err = fail(d, PGP_ECORRUPT, "pgp_reset was not called");
        *out = d;
        return 0;
}

void pgp_free(struct pgp_dec *d)
{
        if (!d)
                return;
        if (d->h.on) {
                pthread_mutex_lock(&d->h.mu);
                d->h.quit = true;
                pthread_cond_signal(&d->h.work);
                pthread_mutex_unlock(&d->h.mu);
                pthread_join(d->h.th, NULL);
        }
        explicit_bzero(d->pass, sizeof d->pass);
        explicit_bzero(&d->m, sizeof d->m);
        explicit_bzero(&d->offer, sizeof d->offer);
        free(d->ptbuf);
        free(d->zout);
        free(d->scratch);
        pz_free(d->pz);
        EVP_CIPHER_CTX_free(d->cfb.ecb);
        EVP_MD_CTX_free(d->mdc);
        EVP_MD_CTX_free(d->s2k);
        EVP_MD_free(d->sha1);
        for (int i = 0; i < N_CIPHERS; i++)
                EVP_CIPHER_free(d->ciph[i]);
        for (int i = 0; i < N_HASHES; i++)
                EVP_MD_free(d->md[i]);
        free(d);
}

void pgp_reset(struct pgp_dec *d, const char *pass, size_t passlen, pgp_sink_fn sink,
               void *sink_ctx)
{
        /* A message abandoned midway may still have slices queued for hashing. */
        mdc_sync(d);
        d->h.failed = false;
        d->h.pend_n = 0;
        explicit_bzero(d->pass, sizeof d->pass);
        explicit_bzero(&d->m, sizeof d->m);
        EVP_CIPHER_CTX_reset(d->cfb.ecb);
        d->sink = sink;
        d->sink_ctx = sink_ctx;
        if (passlen > PASS_MAX) {
                fail(d, PGP_EUNSUPPORTED, "passphrase longer than %d bytes", PASS_MAX);
                return;
        }
        memcpy(d->pass, pass, passlen);
        d->passlen = passlen;
}

int pgp_set_mdc_thread(struct pgp_dec *d)
{
        struct hasher *h = &d->h;
        if (h->on)
                return 0;
        pthread_mutex_init(&h->mu, NULL);
        pthread_cond_init(&h->work, NULL);
        pthread_cond_init(&h->done, NULL);
        if (pthread_create(&h->th, NULL, hasher_main, d))
                return PGP_ENOMEM;
        h->on = true;
        return 0;
}

void pgp_set_s2k_limit(struct pgp_dec *d, uint64_t max_bytes)
{
        d->s2k_limit = max_bytes;
}

const char *pgp_strerror(int err)
{
        switch (err) {
        case 0:
                return "ok";
        case PGP_EBADPASS:
                return "wrong passphrase";
        case PGP_EMDC:
                return "integrity check failed (MDC mismatch)";
        case PGP_ETRUNC:
                return "truncated message";
        case PGP_ENOMDC:
                return "encrypted data without integrity protection (no MDC)";
        case PGP_EPUBKEY:
                return "message is for a public key, not a passphrase";
        case PGP_ENOTPGP:
                return "not an OpenPGP message";
        case PGP_EUNSUPPORTED:
                return "unsupported algorithm or packet";
        case PGP_ECORRUPT:
                return "corrupt message";
        case PGP_ESINK:
                return "cannot write the plaintext";
        case PGP_ENOMEM:
                return "out of memory or crypto library failure";
        default:
                return "unknown error";
        }
}

const char *pgp_detail(const struct pgp_dec *d)
{
        return d->m.err ? d->m.detail : "ok";
}

int pgp_sink_errno(const struct pgp_dec *d)
{
        return d->m.sink_errno;
}

uint64_t pgp_bytes_in(const struct pgp_dec *d)
{
        return d->m.in;
}

uint64_t pgp_bytes_out(const struct pgp_dec *d)
{
        return d->m.out;
}

/* ---- key derivation beside the decryptor ------------------------------------------- */

/* The body of the leading packet when it is a symmetric-key packet (tag 3). gpg writes
 * it with an old-format header; both formats are read, partial lengths are not (a
 * symmetric-key packet never has them). */
static const uint8_t *leading_skesk(const uint8_t *b, size_t len, size_t *body_len)
{
        if (len < 2 || !(b[0] & 0x80))
                return NULL;
        size_t hdr, n;
        if (b[0] & 0x40) {
                if ((b[0] & 0x3f) != 3 || b[1] >= 224)
                        return NULL;
                if (b[1] < 192) {
                        hdr = 2, n = b[1];
                } else {
                        if (len < 3)
                                return NULL;
                        hdr = 3, n = ((size_t)(b[1] - 192) << 8) + b[2] + 192;
                }
        } else {
                if (((b[0] >> 2) & 15) != 3 || (b[0] & 3) != 0)
                        return NULL;
                hdr = 2, n = b[1];
        }
        if (len < hdr + n)
                return NULL;
        *body_len = n;
        return b + hdr;
}

int pgp_key_peek(const uint8_t *buf, size_t len, struct pgp_key_job *job)
{
        size_t n;
        const uint8_t *b = leading_skesk(buf, len, &n);
        memset(job, 0, sizeof *job);
        if (!b || n < 4 || b[0] != 4)
                return -1;
        const struct pgp_cipher *ci = pgp_cipher_by_id(b[1]);
        size_t need = b[2] == 0 ? 4 : b[2] == 1 ? 12 : b[2] == 3 ? 13 : 0;
        if (!ci || !ci->evp || !need || n < need || !pgp_hash_name(b[3]))
                return -1;
        job->cipher = b[1];
        job->keylen = ci->keylen;
        job->s2k_type = b[2];
        job->hash = b[3];
        if (b[2])
                memcpy(job->salt, b + 4, 8);
        if (b[2] == 3)
                job->count = (uint32_t)(16 + (b[12] & 15)) << ((b[12] >> 4) + 6);
        return 0;
}

int pgp_key_derive(struct pgp_key_job *job, const char *pass, size_t passlen)
{
        static __thread uint8_t scratch[SCRATCH];
        struct pgp_s2k s = {.type = job->s2k_type, .hash = job->hash, .count = job->count};
        memcpy(s.salt, job->salt, 8);
        EVP_MD *md = pgp_md_fetch(job->hash);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int rc = md && ctx && passlen + 8 <= SCRATCH / 2
                     ? pgp_s2k_derive(&s, md, ctx, scratch, SCRATCH, (const uint8_t *)pass, passlen,
                                      job->key, job->keylen, 0)
                     : -1;
        EVP_MD_CTX_free(ctx);
        EVP_MD_free(md);
        job->ready = rc == 0;
        return rc == 0 ? 0 : -1;
}

void pgp_key_offer(struct pgp_dec *d, const struct pgp_key_job *job)
{
        d->offer = *job;
}
