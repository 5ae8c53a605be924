/* libFuzzer harness for the decryptor: the packet parsers, S2K, CFB, MDC, the
 * decompressors and the key paths. Each input is decrypted three times: whole, in small
 * chunks, and in small chunks with deferred keys (derived by the harness when asked, as
 * the engine does); all must agree on the result and on every plaintext byte, and no
 * message may ask for more than PGP_MAX_DERIVE keys. The passphrase is "quire-fuzz", that
 * of the seed corpus (tests/fuzz/corpus, made by gpg with --s2k-count 65536, and crafted
 * from RFC 9580: several SKESKs, 1-byte partial lengths). */
#include "quire/pgp/pgp_bench.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char pass[] = "quire-fuzz";
/* gpg's default S2K hashes 65 MB per key; 65536 bytes is what the seeds were made with,
 * so they still decrypt and the fuzzer reaches the inside. */
#define S2K_CAP 65536

struct digest {
        uint64_t h, n;
};

static int sink(void *ctx, const uint8_t *p, size_t len)
{
        struct digest *d = ctx;
        for (size_t i = 0; i < len; i++)
                d->h = (d->h ^ p[i]) * 0x100000001b3u;
        d->n += len;
        return 0;
}

static int feed(struct pgp_dec *dec, const uint8_t *p, size_t n, unsigned *asked)
{
        for (;;) {
                int r = pgp_feed(dec, p, n);
                if (r != PGP_NEEDKEY)
                        return r;
                size_t used = pgp_consumed(dec);
                struct pgp_key_job job;
                pgp_key_wanted(dec, &job);
                /* A job for a key it can derive, once per packet: the bound is the
                 * decryptor's, so a harness count above it is a bug. */
                if (++*asked > PGP_MAX_DERIVE || job.ready)
                        abort();
                pgp_key_derive_limited(&job, pass, strlen(pass), S2K_CAP);
                pgp_key_offer(dec, &job);
                p += used;
                n -= used;
        }
}

static int run(struct pgp_dec *dec, const uint8_t *data, size_t size, size_t chunk, bool defer,
               struct digest *out)
{
        unsigned asked = 0;
        *out = (struct digest){0xcbf29ce484222325u, 0};
        pgp_set_defer_keys(dec, defer);
        pgp_reset(dec, pass, strlen(pass), sink, out);
        for (size_t o = 0; o < size; o += chunk) {
                int r = feed(dec, data + o, size - o < chunk ? size - o : chunk, &asked);
                if (r)
                        return r;
        }
        return pgp_finish(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct pgp_dec *dec;
        if (!dec) {
                if (pgp_new(&dec))
                        abort();
                pgp_set_s2k_limit(dec, S2K_CAP);
        }
        struct digest whole, pieces, deferred;
        size_t chunk = 1 + size % 61;
        int a = run(dec, data, size, size ? size : 1, false, &whole);
        int b = run(dec, data, size, chunk, false, &pieces);
        int c = run(dec, data, size, chunk, true, &deferred);
        /* A sink sees plaintext before the MDC is checked, so a failed run may have passed
         * on fewer bytes when the chunking stopped it earlier; a good run must match. */
        if (a != b || a != c || a == PGP_NEEDKEY || c == PGP_NEEDKEY)
                abort();
        if (a == 0 && (whole.h != pieces.h || whole.n != pieces.n || whole.h != deferred.h ||
                       whole.n != deferred.n))
                abort();
        if (a && !pgp_detail(dec)[0])
                abort();
        return 0;
}
