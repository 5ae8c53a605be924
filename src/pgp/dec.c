/* The decryptor's lifetime, its errors and counters. How the parts fit: pgp_int.h. */
#include "pgp_int.h"
#include "quire/pgp/pgp_bench.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void record(int *err, char *detail, size_t len, int code, const char *fmt, va_list ap)
{
        if (!*err) {
                *err = code;
                vsnprintf(detail, len, fmt, ap);
        }
}

int pgp_fail(struct pgp_dec *d, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        record(&d->m.err, d->m.detail, sizeof d->m.detail, code, fmt, ap);
        va_end(ap);
        return d->m.err;
}

/* Decryption goes on after an inner error so the MDC can be checked; nothing more
 * reaches the sink. */
int pgp_inner_fail(struct pgp_dec *d, int code, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        record(&d->m.ierr, d->m.idetail, sizeof d->m.idetail, code, fmt, ap);
        va_end(ap);
        return code;
}

int pgp_gather_flush(struct pgp_dec *d, struct pgp_gather *g, pgp_take_fn take)
{
        size_t n = g->len;
        g->len = 0;
        return n ? take(d, g->buf, n) : 0;
}

int pgp_gather_put(struct pgp_dec *d, struct pgp_gather *g, const uint8_t *p, size_t n,
                   pgp_take_fn take)
{
        int r;
        if (n >= PGP_SMALL)
                return (r = pgp_gather_flush(d, g, take)) ? r : take(d, p, n);
        if (g->len + n > PGP_GATHER && (r = pgp_gather_flush(d, g, take)))
                return r;
        memcpy(g->buf + g->len, p, n);
        g->len += n;
        return 0;
}

int pgp_gather_more(struct pgp_dec *d, struct pgp_gather *g, pgp_take_fn take, struct pgp_rd *r,
                    const uint8_t **p, size_t *n)
{
        while (g->len) {
                size_t k = pgp_rd_copy(r, p, n, g->buf + g->len, PGP_GATHER - g->len);
                g->len += k;
                if (g->len < PGP_GATHER)
                        return 0;
                int e = pgp_gather_flush(d, g, take);
                if (e)
                        return e;
        }
        return 0;
}

EVP_CIPHER *pgp_cipher_get(struct pgp_dec *d, const struct pgp_cipher *ci)
{
        if (!d->ciph[ci->id])
                d->ciph[ci->id] = pgp_cipher_fetch(ci);
        return d->ciph[ci->id];
}

EVP_MD *pgp_md_get(struct pgp_dec *d, int id)
{
        if (id <= 0 || id >= PGP_N_HASHES)
                return NULL;
        if (!d->md[id])
                d->md[id] = pgp_md_fetch(id);
        return d->md[id];
}

int pgp_new(struct pgp_dec **out)
{
        struct pgp_dec *d = calloc(1, sizeof *d);
        if (!d)
                return PGP_ENOMEM;
        /* Only the first slot is touched unless the MDC thread is on. */
        d->ptbuf = aligned_alloc(64, (size_t)PGP_N_SLOTS * PGP_SLOT);
        d->zout = malloc(PGP_ZOUT);
        d->gc.buf = malloc(PGP_GATHER);
        d->gz.buf = malloc(PGP_GATHER);
        d->go.buf = malloc(PGP_GATHER);
        d->scratch = malloc(PGP_SCRATCH);
        d->cfb.ecb = EVP_CIPHER_CTX_new();
        d->mdc = EVP_MD_CTX_new();
        d->s2k = EVP_MD_CTX_new();
        d->sha1 = pgp_md_fetch(2);
        if (!d->ptbuf || !d->zout || !d->gc.buf || !d->gz.buf || !d->go.buf || !d->scratch ||
            !d->cfb.ecb || !d->mdc || !d->s2k || !d->sha1 || decomp_new(&d->z)) {
                pgp_free(d);
                return PGP_ENOMEM;
        }
        pgp_fail(d, PGP_ECORRUPT, "pgp_reset was not called");
        *out = d;
        return 0;
}

void pgp_free(struct pgp_dec *d)
{
        if (!d)
                return;
        pgp_mdc_thread_stop(d);
        explicit_bzero(d->pass, sizeof d->pass);
        explicit_bzero(&d->m, sizeof d->m);
        explicit_bzero(&d->offer, sizeof d->offer);
        cfb_wipe(&d->cfb);
        free(d->ptbuf);
        free(d->zout);
        free(d->gc.buf);
        free(d->gz.buf);
        free(d->go.buf);
        free(d->scratch);
        decomp_free(d->z);
        EVP_CIPHER_CTX_free(d->cfb.ecb);
        EVP_MD_CTX_free(d->mdc);
        EVP_MD_CTX_free(d->s2k);
        EVP_MD_free(d->sha1);
        for (int i = 0; i < PGP_N_CIPHERS; i++)
                EVP_CIPHER_free(d->ciph[i]);
        for (int i = 0; i < PGP_N_HASHES; i++)
                EVP_MD_free(d->md[i]);
        free(d);
}

void pgp_reset(struct pgp_dec *d, const char *pass, size_t passlen, pgp_sink_fn sink,
               void *sink_ctx)
{
        /* A message abandoned midway may still have slices queued for hashing. */
        pgp_mdc_sync(d);
        d->h.failed = false;
        d->h.pend_n = 0;
        explicit_bzero(d->pass, sizeof d->pass);
        explicit_bzero(&d->m, sizeof d->m);
        explicit_bzero(&d->offer, sizeof d->offer);
        d->gc.len = d->gz.len = d->go.len = 0;
        cfb_wipe(&d->cfb);
        d->sink = sink;
        d->sink_ctx = sink_ctx;
        if (passlen > PGP_PASS_MAX) {
                pgp_fail(d, PGP_EUNSUPPORTED, "passphrase longer than %d bytes", PGP_PASS_MAX);
                return;
        }
        memcpy(d->pass, pass, passlen);
        d->passlen = passlen;
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
        case PGP_NEEDKEY:
                return "waiting for a key";
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
        case PGP_ELIMIT:
                return "too many symmetric-key packets";
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

size_t pgp_consumed(const struct pgp_dec *d)
{
        return d->m.consumed;
}

uint64_t pgp_bytes_in(const struct pgp_dec *d)
{
        return d->m.in;
}

uint64_t pgp_bytes_out(const struct pgp_dec *d)
{
        return d->m.out;
}
