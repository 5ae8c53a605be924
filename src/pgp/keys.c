/* Session keys (RFC 9580 5.3): the S2K parameters of each symmetric-key packet (SKESK),
 * a key for each derived inline, offered by the caller or asked for (deferred keys), at
 * most PGP_MAX_DERIVE derivations a message, the session key unwrapped where the packet
 * carries one, and the quick check that picks the candidate. */
#include "pgp_int.h"
#include "quire/pgp/pgp_bench.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* The S2K and cipher of a v4 SKESK body into job; 0 with *esk_off at the encrypted
 * session key (== len when there is none), else a PGP_E* code with why set. */
static int job_parse(const uint8_t *b, size_t len, struct pgp_key_job *job, size_t *esk_off,
                     char *why, size_t whylen)
{
        memset(job, 0, sizeof *job);
        if (len >= 1 && b[0] != 4) {
                snprintf(why, whylen, "unsupported symmetric-key packet version %d", b[0]);
                return PGP_EUNSUPPORTED;
        }
        size_t need = len < 4 ? 4 : b[2] == 0 ? 4 : b[2] == 1 ? 12 : 13;
        if (len >= 4 && b[2] == 101) {
                snprintf(why, whylen, "unsupported S2K type 101 (GnuPG extension)");
                return PGP_EUNSUPPORTED;
        }
        if (len >= 4 && b[2] != 0 && b[2] != 1 && b[2] != 3) {
                snprintf(why, whylen, "unsupported S2K type %d", b[2]);
                return PGP_EUNSUPPORTED;
        }
        if (len < need) {
                snprintf(why, whylen, "symmetric-key packet too short");
                return PGP_ECORRUPT;
        }
        const struct pgp_cipher *ci = pgp_cipher_by_id(b[1]);
        if (!ci) {
                snprintf(why, whylen, "unknown cipher algorithm %d", b[1]);
                return PGP_EUNSUPPORTED;
        }
        job->cipher = b[1];
        job->keylen = ci->keylen;
        job->s2k_type = b[2];
        job->hash = b[3];
        if (b[2])
                memcpy(job->salt, b + 4, 8);
        if (b[2] == 3)
                job->count = (uint32_t)(16 + (b[12] & 15)) << ((b[12] >> 4) + 6);
        *esk_off = need;
        return 0;
}

static bool job_matches(const struct pgp_key_job *a, const struct pgp_key_job *b)
{
        return a->keylen && a->s2k_type == b->s2k_type && a->hash == b->hash &&
               a->cipher == b->cipher && a->keylen == b->keylen &&
               !memcmp(a->salt, b->salt, sizeof a->salt) && a->count == b->count;
}

/* A session key inside the packet (gpg writes one when a message is also for a public
 * key). A wrong passphrase decrypts it to garbage: such a candidate is dropped, and the
 * quick check then reports the wrong passphrase. */
static int skesk_unwrap(struct pgp_dec *d, const struct pgp_cipher *ci, const uint8_t *kek,
                        const uint8_t *esk, size_t len, struct pgp_cand *c)
{
        uint8_t sk[1 + PGP_MAX_KEY];
        if (len > sizeof sk || cfb_init(&d->cfb, pgp_cipher_get(d, ci), kek, ci->blklen) ||
            cfb_decrypt(&d->cfb, esk, sk, len))
                return -1;
        const struct pgp_cipher *sci = pgp_cipher_by_id(sk[0]);
        int ok = sci && sci->keylen == len - 1 && pgp_cipher_get(d, sci);
        if (ok) {
                c->algo = sk[0];
                memcpy(c->key, sk + 1, len - 1);
        }
        explicit_bzero(sk, sizeof sk);
        return ok ? 0 : -1;
}

/* The key of the packet waiting in m->pkt is known: it gives a candidate, or none. */
static int skesk_take(struct pgp_dec *d, const uint8_t *key)
{
        struct pgp_msg *m = &d->m;
        const struct pgp_cipher *ci = pgp_cipher_by_id(m->want.cipher);
        struct pgp_cand *c = &m->cand[m->ncand];
        m->want_key = m->asked = false;
        if (m->esk_off == m->pktlen) {
                c->algo = ci->id;
                memcpy(c->key, key, ci->keylen);
                m->ncand++;
        } else if (skesk_unwrap(d, ci, key, m->pkt + m->esk_off, m->pktlen - m->esk_off, c) == 0) {
                m->ncand++;
        }
        return 0;
}

static int derive_inline(struct pgp_dec *d)
{
        struct pgp_key_job *j = &d->m.want;
        struct pgp_s2k s = {.type = j->s2k_type, .hash = j->hash, .count = j->count};
        memcpy(s.salt, j->salt, sizeof s.salt);
        d->offer = *j;
        d->offer.ready =
            !pgp_s2k_derive(&s, d->md[j->hash], d->s2k, d->scratch, PGP_SCRATCH, d->pass,
                            d->passlen, d->offer.key, j->keylen, d->s2k_limit);
        return d->offer.ready ? 0 : pgp_fail(d, PGP_ENOMEM, "S2K hash failed");
}

int pgp_key_resume(struct pgp_dec *d)
{
        struct pgp_msg *m = &d->m;
        if (!job_matches(&d->offer, &m->want)) {
                if (!m->asked) {
                        if (m->nderive == PGP_MAX_DERIVE)
                                return pgp_fail(d, PGP_ELIMIT,
                                                "symmetric-key packet %u: more than %d keys to "
                                                "derive in one message, refused (S2K bomb?)",
                                                m->nskesk, PGP_MAX_DERIVE);
                        m->nderive++;
                        m->asked = true;
                }
                if (d->defer_keys)
                        return PGP_NEEDKEY;
                int r = derive_inline(d);
                if (r)
                        return r;
        }
        if (!d->offer.ready)
                return pgp_fail(d, PGP_ENOMEM, "S2K hash failed");
        return skesk_take(d, d->offer.key);
}

int pgp_skesk_end(struct pgp_dec *d)
{
        struct pgp_msg *m = &d->m;
        char why[100];
        m->nskesk++;
        int r = job_parse(m->pkt, m->pktlen, &m->want, &m->esk_off, why, sizeof why);
        if (r)
                return pgp_fail(d, r, "%s", why);
        const struct pgp_cipher *ci = pgp_cipher_by_id(m->want.cipher);
        if (!pgp_md_get(d, m->want.hash))
                return pgp_fail(d, PGP_EUNSUPPORTED, "unsupported S2K hash algorithm %d",
                                m->want.hash);
        if (!pgp_cipher_get(d, ci))
                return pgp_fail(d, PGP_EUNSUPPORTED, "unsupported cipher algorithm %d (%s)", ci->id,
                                ci->name);
        m->saw_skesk = true;
        if (m->ncand == PGP_MAX_CANDS)
                return 0;
        m->want_key = true;
        return pgp_key_resume(d);
}

/* The first block+2 plaintext bytes repeat their last two: a check that tells a wrong
 * passphrase from damaged data before any plaintext goes out. */
int pgp_keys_choose(struct pgp_dec *d)
{
        struct pgp_msg *m = &d->m;
        for (int i = 0; i < m->ncand; i++) {
                const struct pgp_cipher *ci = pgp_cipher_by_id(m->cand[i].algo);
                unsigned bs = ci->blklen;
                uint8_t p[PGP_QC_LEN];
                if (cfb_init(&d->cfb, d->ciph[ci->id], m->cand[i].key, bs) ||
                    cfb_decrypt(&d->cfb, m->qc, p, bs + 2))
                        return pgp_fail(d, PGP_ENOMEM, "cipher failed");
                bool ok = p[bs] == p[bs - 2] && p[bs + 1] == p[bs - 1];
                explicit_bzero(p, sizeof p);
                if (!ok)
                        continue;
                if (cfb_init(&d->cfb, d->ciph[ci->id], m->cand[i].key, bs) || pgp_mdc_begin(d))
                        return pgp_fail(d, PGP_ENOMEM, "cipher failed");
                m->keyed = true;
                m->prefix_left = bs + 2;
                return pgp_mdc_decrypt(d, m->qc, m->qclen);
        }
        return pgp_fail(d, PGP_EBADPASS, "wrong passphrase (session key check failed)");
}

void pgp_set_defer_keys(struct pgp_dec *d, bool on)
{
        d->defer_keys = on;
}

void pgp_key_wanted(const struct pgp_dec *d, struct pgp_key_job *job)
{
        assert(d->m.want_key);
        *job = d->m.want;
}

void pgp_key_offer(struct pgp_dec *d, const struct pgp_key_job *job)
{
        d->offer = *job;
}

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
        size_t n, off;
        char why[100];
        const uint8_t *b = leading_skesk(buf, len, &n);
        memset(job, 0, sizeof *job);
        if (!b || n < 1 || job_parse(b, n, job, &off, why, sizeof why) ||
            !pgp_cipher_by_id(job->cipher)->evp || !pgp_hash_name(job->hash)) {
                memset(job, 0, sizeof *job);
                return -1;
        }
        return 0;
}

int pgp_key_derive_limited(struct pgp_key_job *job, const char *pass, size_t passlen,
                           uint64_t max_bytes)
{
        static __thread uint8_t scratch[PGP_SCRATCH];
        struct pgp_s2k s = {.type = job->s2k_type, .hash = job->hash, .count = job->count};
        memcpy(s.salt, job->salt, 8);
        EVP_MD *md = pgp_md_fetch(job->hash);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int rc = md && ctx && passlen + 8 <= PGP_SCRATCH / 2
                     ? pgp_s2k_derive(&s, md, ctx, scratch, PGP_SCRATCH, (const uint8_t *)pass,
                                      passlen, job->key, job->keylen, max_bytes)
                     : -1;
        EVP_MD_CTX_free(ctx);
        EVP_MD_free(md);
        job->ready = rc == 0;
        return rc == 0 ? 0 : -1;
}

int pgp_key_derive(struct pgp_key_job *job, const char *pass, size_t passlen)
{
        return pgp_key_derive_limited(job, pass, passlen, 0);
}
