/* The decrypted stream of an encrypted data packet (SEIPD v1): CFB a slice at a time,
 * the MDC's SHA-1 over the plaintext (on a helper thread when it is on), and the last 22
 * bytes held back until the packet ends, since they may be the MDC packet itself. */
#include "pgp_int.h"

#include <string.h>

/* SHA-1 on the SHA extensions where the CPU has them (sha1s: its message schedule mostly
 * off the SHA unit, faster than OpenSSL's), else OpenSSL's. */
static int hash_update(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        if (d->m.own_sha) {
                cfbx_sha1_update(&d->m.sha, p, n);
                return 0;
        }
        return EVP_DigestUpdate(d->mdc, p, n) ? 0 : -1;
}

static void *hasher_main(void *arg)
{
        struct pgp_dec *d = arg;
        struct pgp_hasher *h = &d->h;
        pthread_mutex_lock(&h->mu);
        for (;;) {
                while (h->tail == h->head && !h->quit)
                        pthread_cond_wait(&h->work, &h->mu);
                if (h->tail == h->head)
                        break;
                const uint8_t *p = h->q[h->tail % PGP_N_SLOTS].p;
                size_t n = h->q[h->tail % PGP_N_SLOTS].n;
                pthread_mutex_unlock(&h->mu);
                bool ok = !n || !hash_update(d, p, n);
                pthread_mutex_lock(&h->mu);
                h->failed |= !ok;
                h->tail++;
                if (h->head - h->tail <= h->wake_at)
                        pthread_cond_signal(&h->done);
        }
        pthread_mutex_unlock(&h->mu);
        return NULL;
}

int pgp_set_mdc_thread(struct pgp_dec *d)
{
        struct pgp_hasher *h = &d->h;
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

void pgp_mdc_thread_stop(struct pgp_dec *d)
{
        struct pgp_hasher *h = &d->h;
        if (!h->on)
                return;
        pthread_mutex_lock(&h->mu);
        h->quit = true;
        pthread_cond_signal(&h->work);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->th, NULL);
        h->on = false;
}

/* When more than `most` slices are still to hash, waits until only `resume` are: the
 * decrypting thread, stopped by a full queue, sleeps until half of it is free again, so
 * the threads hand over several slices per wake-up instead of ping-ponging on each. */
static void hasher_wait(struct pgp_hasher *h, uint64_t most, uint64_t resume)
{
        pthread_mutex_lock(&h->mu);
        if (h->head - h->tail > most) {
                h->wake_at = resume;
                while (h->head - h->tail > resume)
                        pthread_cond_wait(&h->done, &h->mu);
                h->wake_at = 0;
        }
        pthread_mutex_unlock(&h->mu);
}

static void hasher_submit(struct pgp_hasher *h)
{
        pthread_mutex_lock(&h->mu);
        h->q[h->head % PGP_N_SLOTS].p = h->pend;
        h->q[h->head % PGP_N_SLOTS].n = h->pend_n;
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
        hasher_wait(&d->h, PGP_N_SLOTS - 1, PGP_N_SLOTS / 2);
        return d->ptbuf + (d->h.head % PGP_N_SLOTS) * PGP_SLOT;
}

static int mdc_update(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        if (!d->h.on)
                return hash_update(d, p, n);
        d->h.pend = p;
        d->h.pend_n = n;
        return 0;
}

int pgp_mdc_sync(struct pgp_dec *d)
{
        if (!d->h.on)
                return 0;
        hasher_wait(&d->h, 0, 0);
        return d->h.failed ? -1 : 0;
}

/* With the MDC thread on, SHA-1 has a core to itself and AES-NI (if any) its own loop;
 * on one thread, both run in one loop when the key is an AES key on AES-NI. */
int pgp_mdc_begin(struct pgp_dec *d)
{
        struct pgp_msg *m = &d->m;
        m->own_sha = cfbx_available();
        m->fused = m->own_sha && d->cfb.fast && !d->h.on;
        if (m->own_sha) {
                cfbx_sha1_init(&m->sha);
                return 0;
        }
        return EVP_DigestInit_ex(d->mdc, d->sha1, NULL) ? 0 : -1;
}

/* Plaintext hashed already goes on to the packets inside, after the prefix. */
static int plain_pass(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        struct pgp_msg *m = &d->m;
        size_t k = n < m->prefix_left ? n : m->prefix_left;
        m->prefix_left -= k;
        if (n > k && !m->ierr && pgp_inner_feed(d, p + k, n - k) < 0)
                return m->err; /* 0 when the error waits for the MDC */
        return 0;
}

static int plain_emit(struct pgp_dec *d, const uint8_t *p, size_t n)
{
        if (mdc_update(d, p, n))
                return pgp_fail(d, PGP_ENOMEM, "SHA-1 failed");
        return plain_pass(d, p, n);
}

/* pt lies in ptbuf after PGP_HEAD bytes of headroom: the held-back tail goes in front
 * of it so the hash and the sink see one contiguous run per slice. */
static int plain_feed(struct pgp_dec *d, uint8_t *pt, size_t n)
{
        struct pgp_msg *m = &d->m;
        size_t h = m->holdlen;
        if (h + n <= PGP_MDC_LEN) {
                memcpy(m->hold + h, pt, n);
                m->holdlen += n;
                return 0;
        }
        uint8_t *start = pt - h;
        memcpy(start, m->hold, h);
        size_t emit = h + n - PGP_MDC_LEN;
        memcpy(m->hold, start + emit, PGP_MDC_LEN);
        m->holdlen = PGP_MDC_LEN;
        return plain_emit(d, start, emit);
}

/* The fused loop's slice: the held-back tail and then the partial SHA-1 block go in front
 * of pt, and every whole block from there to PGP_MDC_LEN bytes before the slice's end is
 * hashed while the slice is decrypted. */
static int fused_feed(struct pgp_dec *d, const uint8_t *c, uint8_t *pt, size_t n)
{
        struct pgp_msg *m = &d->m;
        struct sha1s *s = &m->sha;
        size_t h = m->holdlen;
        if (h + n <= PGP_MDC_LEN) {
                if (cfb_decrypt(&d->cfb, c, pt, n))
                        return pgp_fail(d, PGP_ENOMEM, "cipher failed");
                memcpy(m->hold + h, pt, n);
                m->holdlen += n;
                return 0;
        }
        uint8_t *start = pt - h, *hs = start - s->blen;
        size_t emit = h + n - PGP_MDC_LEN, run = s->blen + emit, nsha = run / 64;
        memcpy(start, m->hold, h);
        memcpy(hs, s->buf, s->blen);
        if (cfb_decrypt_hash(&d->cfb, c, pt, n, s, h + s->blen, nsha))
                return pgp_fail(d, PGP_ENOMEM, "cipher failed");
        s->len += 64 * nsha;
        s->blen = (unsigned)(run % 64);
        memcpy(s->buf, hs + 64 * nsha, s->blen);
        memcpy(m->hold, start + emit, PGP_MDC_LEN);
        m->holdlen = PGP_MDC_LEN;
        return plain_pass(d, start, emit);
}

int pgp_mdc_decrypt(struct pgp_dec *d, const uint8_t *c, size_t n)
{
        while (n) {
                size_t k = n < PGP_SLICE ? n : PGP_SLICE;
                uint8_t *pt = next_slot(d) + PGP_HEAD;
                int r;
                if (d->m.fused)
                        r = fused_feed(d, c, pt, k);
                else if (cfb_decrypt(&d->cfb, c, pt, k))
                        return pgp_fail(d, PGP_ENOMEM, "cipher failed");
                else
                        r = plain_feed(d, pt, k);
                if (d->h.on)
                        hasher_submit(&d->h);
                if (r)
                        return r;
                c += k;
                n -= k;
        }
        return 0;
}

int pgp_mdc_check(struct pgp_dec *d)
{
        struct pgp_msg *m = &d->m;
        uint8_t md[EVP_MAX_MD_SIZE];
        if (!m->keyed || m->holdlen < PGP_MDC_LEN)
                return pgp_fail(d, PGP_ECORRUPT, "encrypted data packet too short");
        if (m->hold[0] != 0xD3 || m->hold[1] != 0x14)
                return pgp_fail(d, PGP_EMDC, "integrity check failed: no MDC packet at the end");
        if (pgp_mdc_sync(d))
                return pgp_fail(d, PGP_ENOMEM, "SHA-1 failed");
        if (m->own_sha)
                cfbx_sha1_final(&m->sha, m->hold, 2, md);
        else if (!EVP_DigestUpdate(d->mdc, m->hold, 2) || !EVP_DigestFinal_ex(d->mdc, md, NULL))
                return pgp_fail(d, PGP_ENOMEM, "SHA-1 failed");
        if (memcmp(md, m->hold + 2, 20))
                return pgp_fail(d, PGP_EMDC,
                                "integrity check failed (MDC mismatch): data modified or "
                                "damaged");
        return 0;
}
