/* libFuzzer harness for the decryptor: the packet parsers, S2K, CFB, MDC and the
 * decompressors. Each input is decrypted twice, whole and in small chunks, and both runs
 * must agree on the result and on every plaintext byte. The passphrase is "quire-fuzz",
 * that of the seed corpus (tests/fuzz/corpus, made by gpg with --s2k-count 65536). */
#include "quire/pgp/pgp_bench.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char pass[] = "quire-fuzz";

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

static int run(struct pgp_dec *dec, const uint8_t *data, size_t size, size_t chunk,
               struct digest *out)
{
        *out = (struct digest){0xcbf29ce484222325u, 0};
        pgp_reset(dec, pass, strlen(pass), sink, out);
        for (size_t o = 0; o < size; o += chunk) {
                int r = pgp_feed(dec, data + o, size - o < chunk ? size - o : chunk);
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
                /* gpg's default S2K hashes 65 MB per input; 65536 bytes is what the seeds
                 * were made with, so they still decrypt and the fuzzer reaches the inside. */
                pgp_set_s2k_limit(dec, 65536);
        }
        struct digest whole, pieces;
        int a = run(dec, data, size, size ? size : 1, &whole);
        int b = run(dec, data, size, 1 + size % 61, &pieces);
        /* A sink sees plaintext before the MDC is checked, so a failed run may have passed
         * on fewer bytes when the chunking stopped it earlier; a good run must match. */
        if (a != b || (a == 0 && (whole.h != pieces.h || whole.n != pieces.n)))
                abort();
        if (a && !pgp_detail(dec)[0])
                abort();
        return 0;
}
