/* quire bench decrypt: in-memory throughput of the streaming decryptor against the serial
 * EVP CFB path it replaces. Builds its own message (SKESK + SEIPD with MDC, the shape
 * `gpg --symmetric` writes for an already-compressed file), so it needs no gpg. */
#include "cmds.h"
#include "quire/pgp/pgp_bench.h"
#include "quire/base/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BD_SIZE = 256, BD_CHUNK, BD_CIPHER, BD_ROUNDS };

static const struct opt bench_decrypt_opts[] = {
    OPT("size", BD_SIZE, "SIZE", "256MiB", "Plaintext bytes of the in-memory message."),
    OPT("chunk", BD_CHUNK, "SIZE", "1MiB", "The message is fed in pieces of this size."),
    OPT("cipher", BD_CIPHER, "ID", "9",
        "OpenPGP cipher id: 9 AES-256, 8 AES-192, 7 AES-128, 13 Camellia-256, 3 CAST5, ..."),
    OPT("rounds", BD_ROUNDS, "N", "5", "Best of N rounds, after a warm-up."),
    {0},
};

const struct cmd_spec bench_decrypt_spec = {
    .name = "bench decrypt",
    .summary = "in-memory throughput of the decryptor",
    .description = "Decrypts an in-memory message (SKESK and SEIPD with MDC, the shape "
                   "`gpg --symmetric` writes) with quire's decryptor and with the serial EVP "
                   "CFB path it replaces, and times the S2K a default gpg message costs per "
                   "book. Prints GB/s (10^9 bytes). A benchmark: nothing is asserted.",
    .opts = bench_decrypt_opts,
    .main = bench_decrypt,
};

static const char pass[] = "quire bench";

static int count_sink(void *ctx, const uint8_t *buf, size_t len)
{
        *(uint64_t *)ctx += len;
        return 0;
}

/* fused: AES-NI CFB and the MDC's SHA-1 in one loop where the CPU has them (one thread
 * only); otherwise EVP's ECB keystream and OpenSSL's SHA-1, as before. */
static double run_quire(struct pgp_dec *d, const struct pgp_bench_msg *m, size_t chunk, bool fused,
                        int *err)
{
        pgp_bench_fused(fused);
        uint64_t got = 0;
        uint64_t t0 = util_now_ns();
        pgp_reset(d, pass, strlen(pass), count_sink, &got);
        int r = 0;
        for (size_t o = 0; o < m->len && !r; o += chunk)
                r = pgp_feed(d, m->p + o, m->len - o < chunk ? m->len - o : chunk);
        if (!r)
                r = pgp_finish(d);
        *err = r;
        double t = (double)(util_now_ns() - t0);
        pgp_bench_fused(true);
        return t;
}

/* What quire replaces: EVP's CFB, one block after the other, then SHA-1 over the result.
 * mode 0: CFB + SHA-1, 1: CFB alone, 2: ECB alone, 3: SHA-1 alone. */
static double run_evp(const struct pgp_bench_msg *m, size_t chunk, uint8_t *out, int mode)
{
        EVP_CIPHER *cfb = pgp_bench_cipher(m->cipher, mode != 2);
        EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
        EVP_MD *sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        uint8_t zero[16] = {0}, dg[20];
        const uint8_t *c = m->p + m->body_off;
        size_t n = m->len - m->body_off;
        n -= mode == 2 ? n % m->blklen : 0;
        uint64_t t0 = util_now_ns();
        EVP_CipherInit_ex2(cc, cfb, m->key, mode == 2 ? NULL : zero, mode == 2, NULL);
        EVP_CIPHER_CTX_set_padding(cc, 0);
        EVP_DigestInit_ex(md, sha1, NULL);
        for (size_t o = 0; o < n; o += chunk) {
                int k = (int)(n - o < chunk ? n - o : chunk), outl;
                if (mode != 3)
                        EVP_CipherUpdate(cc, out, &outl, c + o, k);
                if (mode == 0 || mode == 3)
                        EVP_DigestUpdate(md, mode == 3 ? c + o : out, (size_t)k);
        }
        EVP_DigestFinal_ex(md, dg, NULL);
        double t = (double)(util_now_ns() - t0);
        EVP_CIPHER_free(cfb);
        EVP_CIPHER_CTX_free(cc);
        EVP_MD_free(sha1);
        EVP_MD_CTX_free(md);
        return t;
}

struct bopts {
        uint64_t size, chunk, rounds, cipher;
};

static int set_option(void *ctx, int key, const char *arg)
{
        const struct cmd_spec *c = &bench_decrypt_spec;
        struct bopts *o = ctx;
        switch (key) {
        case BD_SIZE:
                return opts_size(c, key, arg, 1, (3ull << 30) - 1, &o->size);
        case BD_CHUNK:
                return opts_size(c, key, arg, 1, 1u << 30, &o->chunk);
        case BD_CIPHER:
                return opts_count(c, key, arg, 1, 255, &o->cipher);
        case BD_ROUNDS:
                return opts_count(c, key, arg, 1, 1000, &o->rounds);
        }
        return 0;
}

/* Best time (ms) of the key derivation a default `gpg --symmetric` message costs per book:
 * iterated S2K, SHA-1, count 65011712, a 32-byte AES-256 key (two hash streams). */
static double s2k_ms(unsigned rounds)
{
        struct pgp_key_job job = {.s2k_type = 3,
                                  .hash = 2,
                                  .cipher = 9,
                                  .keylen = 32,
                                  .salt = "saltsalt",
                                  .count = 65011712};
        double best = 1e300;
        for (unsigned r = 0; r <= rounds; r++) {
                uint64_t t0 = util_now_ns();
                if (pgp_key_derive(&job, pass, sizeof pass - 1))
                        return -1;
                double ms = (double)(util_now_ns() - t0) / 1e6;
                if (r && ms < best)
                        best = ms;
        }
        explicit_bzero(&job, sizeof job);
        return best;
}

static double gbps(uint64_t bytes, double ns)
{
        return (double)bytes / ns;
}

int bench_decrypt(int argc, char **argv)
{
        struct bopts o = {.size = 256u << 20, .chunk = 1u << 20, .rounds = 5, .cipher = 9};
        int next = opts_parse(&bench_decrypt_spec, argc, argv, set_option, &o);
        if (next < 0)
                return opts_exit_status(next);
        struct pgp_bench_msg m = {0};
        struct pgp_dec *d = NULL, *d2 = NULL;
        uint8_t *out = malloc(o.chunk);
        if (!out || pgp_bench_build(&m, (int)o.cipher, o.size, pass) || pgp_new(&d) ||
            pgp_new(&d2) || pgp_set_mdc_thread(d2)) {
                fprintf(stderr, "quire: bench decrypt: cannot set up (cipher %d)\n", (int)o.cipher);
                return 1;
        }
        memset(out, 0, o.chunk);
        enum { N = 7 };
        double best[N];
        for (int i = 0; i < N; i++)
                best[i] = 1e300;
        int err = 0, err2 = 0;
        /* Round 0 is the warm-up: it faults in every buffer, which this VM charges dearly. */
        for (uint64_t r = 0; r <= o.rounds && !err && !err2; r++) {
                double t[N] = {
                    run_quire(d, &m, o.chunk, false, &err), run_evp(&m, o.chunk, out, 0),
                    run_evp(&m, o.chunk, out, 1),           run_evp(&m, o.chunk, out, 2),
                    run_evp(&m, o.chunk, out, 3),           run_quire(d2, &m, o.chunk, true, &err2),
                    run_quire(d, &m, o.chunk, true, &err)};
                for (int i = 0; r && i < N; i++)
                        best[i] = t[i] < best[i] ? t[i] : best[i];
        }
        if (err || err2) {
                fprintf(stderr, "quire: bench decrypt: %s\n", pgp_detail(err ? d : d2));
                return 1;
        }
        uint64_t n = m.len - m.body_off;
        printf("decrypt %s, %.0f MiB message, %.0f KiB chunks, best of %d:\n", m.name,
               (double)m.len / 1048576, (double)o.chunk / 1024, (int)o.rounds);
        printf("  quire, AES-NI CFB fused with SHA-1 (one thread):   %.2f GB/s%s\n",
               gbps(n, best[6]), pgp_bench_fused_available() ? "" : " (no AES-NI/SHA-NI: EVP)");
        printf("  quire, EVP ECB keystream + XOR, then SHA-1:        %.2f GB/s\n",
               gbps(n, best[0]));
        printf("  quire, MDC SHA-1 on a second thread (--threads 2): %.2f GB/s\n",
               gbps(n, best[5]));
        printf("  EVP CFB serial + SHA-1 (the path it replaces):    %.2f GB/s\n", gbps(n, best[1]));
        printf("  parts: EVP CFB alone %.2f, ECB alone %.2f, SHA-1 alone %.2f GB/s\n",
               gbps(n, best[2]), gbps(n, best[3]), gbps(n, best[4]));
        double fast = s2k_ms(3);
        pgp_bench_sha_ni(false);
        double evp = s2k_ms(3);
        pgp_bench_sha_ni(true);
        printf("S2K per book (SHA-1, count 65011712, AES-256 key: two streams), best of 3:\n");
        printf("  quire: %.1f ms (EVP SHA-1 streams one after the other: %.1f ms)\n", fast, evp);
        pgp_free(d);
        pgp_free(d2);
        pgp_bench_free(&m);
        free(out);
        return 0;
}
