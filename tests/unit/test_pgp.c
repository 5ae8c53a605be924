/* Unit tests of the decryptor through its library API, on the gpg-made messages of the
 * fuzz seed corpus (passphrase "quire-fuzz"; most hold `seq 1 3000`). */
#include "quire/pgp/pgp.h"
#include "quire/pgp/pgp_bench.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char pass[] = "quire-fuzz";

struct buf {
        uint8_t *p;
        size_t len, cap;
};

static int collect(void *ctx, const uint8_t *p, size_t n)
{
        struct buf *b = ctx;
        if (b->len + n > b->cap) {
                b->cap = (b->len + n) * 2;
                b->p = realloc(b->p, b->cap);
                assert_non_null(b->p);
        }
        memcpy(b->p + b->len, p, n);
        b->len += n;
        return 0;
}

static struct buf load(const char *name)
{
        const char *dir = getenv("QUIRE_FIXTURES");
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir ? dir : "tests/fuzz/corpus", name);
        FILE *f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s (run from the project root or set QUIRE_FIXTURES)", path);
        struct buf b = {0};
        uint8_t tmp[4096];
        size_t n;
        while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
                collect(&b, tmp, n);
        fclose(f);
        return b;
}

/* What `seq 1 3000` prints. */
static struct buf seq_text(void)
{
        struct buf b = {0};
        char line[16];
        for (int i = 1; i <= 3000; i++)
                collect(&b, (const uint8_t *)line, (size_t)snprintf(line, sizeof line, "%d\n", i));
        return b;
}

/* Decrypts in chunks of `chunk` bytes; returns pgp_feed's or pgp_finish's result. */
static int decrypt(struct pgp_dec *d, const uint8_t *in, size_t len, size_t chunk, const char *pw,
                   struct buf *out)
{
        out->len = 0;
        pgp_reset(d, pw, strlen(pw), collect, out);
        for (size_t o = 0; o < len; o += chunk) {
                int r = pgp_feed(d, in + o, len - o < chunk ? len - o : chunk);
                if (r)
                        return r;
        }
        return pgp_finish(d);
}

static struct pgp_dec *dec;

static int setup(void **state)
{
        return pgp_new(&dec);
}

static int teardown(void **state)
{
        pgp_free(dec);
        return 0;
}

static void expect_file(const char *name, const struct buf *want)
{
        struct buf in = load(name), out = {0};
        static const size_t chunks[] = {1, 7, 65536};
        for (size_t i = 0; i < 3; i++) {
                int r = decrypt(dec, in.p, in.len, chunks[i], pass, &out);
                if (r)
                        fail_msg("%s, %zu-byte chunks: %s", name, chunks[i], pgp_detail(dec));
                assert_int_equal(out.len, want->len);
                assert_memory_equal(out.p, want->p, want->len);
                assert_int_equal(pgp_bytes_out(dec), want->len);
                assert_int_equal(pgp_bytes_in(dec), in.len);
        }
        free(in.p);
        free(out.p);
}

static void test_gpg_messages(void **state)
{
        struct buf seq = seq_text(), hello = {(uint8_t *)"hello\n", 6, 6}, empty = {0};
        static const char *const seqs[] = {
            "seq-plain.gpg",       "seq-pipe-zlib.gpg",
            "seq-zip.gpg",         "seq-pipe-bzip2-cast5.gpg",
            "seq-s2k1-aes128.gpg", "seq-s2k0-camellia.gpg",
        };
        for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
                expect_file(seqs[i], &seq);
        expect_file("hello-pkesk-skesk.gpg", &hello);
        expect_file("empty.gpg", &empty);
        free(seq.p);
}

static int decrypt_file(const char *name, const char *pw, size_t chunk)
{
        struct buf in = load(name), out = {0};
        int r = decrypt(dec, in.p, in.len, chunk, pw, &out);
        free(in.p);
        free(out.p);
        return r;
}

static void test_refusals(void **state)
{
        assert_int_equal(decrypt_file("seq-plain.gpg", "quire-fuzz!", 65536), PGP_EBADPASS);
        assert_int_equal(decrypt_file("seq-nomdc.gpg", pass, 65536), PGP_ENOMDC);
        assert_int_equal(decrypt_file("hello-pkesk-only.gpg", pass, 65536), PGP_EPUBKEY);
        assert_int_equal(decrypt_file("seq-twofish.gpg", pass, 7), PGP_EUNSUPPORTED);
        assert_non_null(strstr(pgp_detail(dec), "Twofish"));
        struct buf out = {0};
        assert_int_equal(decrypt(dec, (const uint8_t *)"hello world\n", 12, 5, pass, &out),
                         PGP_ENOTPGP);
        assert_int_equal(decrypt(dec, NULL, 0, 1, pass, &out), PGP_ENOTPGP);
        free(out.p);
}

/* A flipped byte anywhere after the quick-check prefix must fail the MDC; the garbage it
 * decrypts to (bad deflate, bad packets) must not be reported instead. */
static void test_tamper(void **state)
{
        static const char *const names[] = {"seq-plain.gpg", "seq-zip.gpg",
                                            "seq-pipe-bzip2-cast5.gpg"};
        for (size_t f = 0; f < 3; f++) {
                struct buf in = load(names[f]), out = {0};
                size_t at[] = {in.len / 2, in.len - 30, in.len - 1, 60};
                for (size_t i = 0; i < 4; i++) {
                        in.p[at[i]] ^= 0x40;
                        int r = decrypt(dec, in.p, in.len, 4096, pass, &out);
                        if (r != PGP_EMDC)
                                fail_msg("%s byte %zu: %d %s", names[f], at[i], r, pgp_detail(dec));
                        in.p[at[i]] ^= 0x40;
                }
                free(in.p);
                free(out.p);
        }
}

static void test_truncation(void **state)
{
        struct buf in = load("seq-pipe-zlib.gpg"), out = {0};
        for (size_t cut = 0; cut < in.len; cut += cut < 64 ? 1 : 97) {
                int r = decrypt(dec, in.p, cut, 1000, pass, &out);
                if (r == 0)
                        fail_msg("prefix of %zu bytes accepted", cut);
                if (cut > 40 && r != PGP_ETRUNC)
                        fail_msg("prefix of %zu bytes: %s", cut, pgp_detail(dec));
        }
        free(in.p);
        free(out.p);
}

/* The engine retries a download with the same decryptor: a reset mid-message must leave
 * no trace in the next one. */
static void test_reset_midway(void **state)
{
        struct buf in = load("seq-pipe-bzip2-cast5.gpg"), out = {0}, seq = seq_text();
        pgp_reset(dec, pass, strlen(pass), collect, &out);
        assert_int_equal(pgp_feed(dec, in.p, in.len / 2), 0);
        assert_int_equal(decrypt(dec, in.p, in.len, 333, pass, &out), 0);
        assert_int_equal(out.len, seq.len);
        assert_memory_equal(out.p, seq.p, seq.len);
        free(in.p);
        free(out.p);
        free(seq.p);
}

/* The SEIPD of seq-plain.gpg (one five-octet length) cut into partial lengths (RFC 9580
 * 4.2.1.4) of the sizes in `cut`, in turn (0xE0 + log2 before each piece); the final
 * part gets a one- or two-octet length. */
static struct buf reframed(const unsigned *cut, size_t ncut)
{
        struct buf in = load("seq-plain.gpg"), out = {0};
        assert_int_equal(in.p[15], 0xd2);
        assert_int_equal(in.p[16], 0xff);
        size_t len =
            (size_t)in.p[17] << 24 | (size_t)in.p[18] << 16 | (size_t)in.p[19] << 8 | in.p[20];
        assert_int_equal(21 + len, in.len);
        collect(&out, in.p, 16);
        size_t o = 0;
        for (size_t i = 0; len - o > cut[i % ncut]; o += cut[i++ % ncut]) {
                uint8_t h = (uint8_t)(0xe0 + __builtin_ctz(cut[i % ncut]));
                collect(&out, &h, 1);
                collect(&out, in.p + 21 + o, cut[i % ncut]);
        }
        size_t last = len - o;
        uint8_t h[2] = {(uint8_t)last, 0};
        if (last >= 192) {
                h[0] = (uint8_t)(((last - 192) >> 8) + 192);
                h[1] = (uint8_t)((last - 192) & 0xff);
        }
        collect(&out, h, last >= 192 ? 2 : 1);
        collect(&out, in.p + 21 + o, last);
        free(in.p);
        return out;
}

static void test_one_byte_partials(void **state)
{
        static const unsigned ones[] = {1}, mixed[] = {1, 2, 8, 1, 8192, 4, 1, 1, 4096, 2};
        struct buf seq = seq_text(), out = {0};
        struct buf ins[] = {reframed(ones, 1), reframed(mixed, 10)};
        static const size_t chunks[] = {1, 4095, 1 << 20};
        for (size_t f = 0; f < 2; f++) {
                for (size_t i = 0; i < 3; i++) {
                        int r = decrypt(dec, ins[f].p, ins[f].len, chunks[i], pass, &out);
                        if (r)
                                fail_msg("%zu-byte chunks: %s", chunks[i], pgp_detail(dec));
                        assert_int_equal(out.len, seq.len);
                        assert_memory_equal(out.p, seq.p, seq.len);
                        assert_int_equal(pgp_bytes_out(dec), seq.len);
                }
        }
        /* Tampered or cut anywhere in the gathered part, it is still refused. */
        struct buf *in = &ins[0];
        in->p[in->len / 2 | 1] ^= 1;
        assert_int_equal(decrypt(dec, in->p, in->len, 1 << 20, pass, &out), PGP_EMDC);
        assert_int_equal(decrypt(dec, in->p, in->len - 3, 1 << 20, pass, &out), PGP_ETRUNC);
        free(ins[0].p);
        free(ins[1].p);
        free(out.p);
        free(seq.p);
}

static int failing_sink(void *ctx, const uint8_t *p, size_t n)
{
        return -ENOSPC;
}

static void test_sink_error(void **state)
{
        struct buf in = load("seq-plain.gpg");
        pgp_reset(dec, pass, strlen(pass), failing_sink, NULL);
        assert_int_equal(pgp_feed(dec, in.p, in.len), PGP_ESINK);
        assert_int_equal(pgp_sink_errno(dec), ENOSPC);
        assert_int_equal(pgp_finish(dec), PGP_ESINK);
        free(in.p);
}

static void test_strerror(void **state)
{
        for (int e = PGP_EBADPASS; e <= PGP_ELIMIT; e++)
                assert_string_not_equal(pgp_strerror(e), "unknown error");
}

/* The same checks with SHA-1 on the helper thread that `quire decrypt` uses. */
static void test_mdc_thread(void **state)
{
        struct pgp_dec *plain = dec;
        assert_int_equal(pgp_new(&dec), 0);
        assert_int_equal(pgp_set_mdc_thread(dec), 0);
        test_gpg_messages(state);
        test_tamper(state);
        test_reset_midway(state);
        test_sink_error(state);
        test_one_byte_partials(state);
        pgp_free(dec);
        dec = plain;
}

/* One message three ways: the fused AES-NI CFB + SHA-1 loop (the default on one thread
 * where the CPU has it), the EVP path it stands in for, and the MDC thread. They must give
 * the same bytes and the same verdict; returns the verdict. */
static int three_ways(struct pgp_dec *thr, const uint8_t *in, size_t len, size_t chunk,
                      struct buf *outs)
{
        int r[3];
        r[0] = decrypt(dec, in, len, chunk, "quire bench", &outs[0]);
        pgp_bench_fused(false);
        r[1] = decrypt(dec, in, len, chunk, "quire bench", &outs[1]);
        pgp_bench_fused(true);
        r[2] = decrypt(thr, in, len, chunk, "quire bench", &outs[2]);
        for (int i = 1; i < 3; i++) {
                if (r[i] != r[0])
                        fail_msg("%zu bytes in %zu-byte chunks: verdict %d on path 0, %d on %d",
                                 len, chunk, r[0], r[i], i);
                if (!r[0] && (outs[i].len != outs[0].len ||
                              (outs[0].len && memcmp(outs[i].p, outs[0].p, outs[0].len))))
                        fail_msg("%zu bytes in %zu-byte chunks: path %d's plaintext differs", len,
                                 chunk, i);
        }
        return r[0];
}

/* Messages of lengths around the AES block, the SHA-1 block, the MDC hold-back and the
 * slice, for AES-128/192/256 (fused) and CAST5 and Camellia (not), fed in pieces of
 * awkward sizes so every alignment of the slices against both blocks comes up; then the
 * same messages tampered with (ciphertext, MDC packet header, MDC hash) and cut short. */
static void test_fused_paths(void **state)
{
        if (!pgp_bench_fused_available())
                printf("no AES-NI/SHA-NI on this CPU: the paths compared are all EVP's\n");
        struct pgp_dec *thr;
        assert_int_equal(pgp_new(&thr), 0);
        assert_int_equal(pgp_set_mdc_thread(thr), 0);
        static const int ciphers[] = {9, 8, 7, 3, 13};
        static const size_t sizes[] = {0,  1,  15, 16,  17,          41,         42,    43,
                                       63, 64, 65, 200, 131072 - 30, 131072 + 7, 300001};
        static const size_t chunks[] = {1, 7, 15, 16, 17, 65536, 1 << 20};
        struct buf outs[3] = {{0}};
        for (size_t c = 0; c < sizeof ciphers / sizeof ciphers[0]; c++)
                for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
                        struct pgp_bench_msg m;
                        assert_int_equal(pgp_bench_build(&m, ciphers[c], sizes[z], "quire bench"),
                                         0);
                        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
                                if (chunks[k] < 16 && sizes[z] > 1000)
                                        continue;
                                int r = three_ways(thr, m.p, m.len, chunks[k], outs);
                                if (r)
                                        fail_msg("%s, %zu bytes: %s", m.name, sizes[z],
                                                 pgp_detail(dec));
                                assert_int_equal(outs[0].len, sizes[z]);
                        }
                        size_t at[] = {m.body_off + m.blklen + 5, m.len / 2, m.len - 22, m.len - 21,
                                       m.len - 1};
                        for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
                                m.p[at[i]] ^= 0x10;
                                assert_int_not_equal(three_ways(thr, m.p, m.len, 4099, outs), 0);
                                m.p[at[i]] ^= 0x10;
                        }
                        assert_int_equal(three_ways(thr, m.p, m.len - 1, 4099, outs), PGP_ETRUNC);
                        pgp_bench_free(&m);
                }
        for (int i = 0; i < 3; i++)
                free(outs[i].p);
        pgp_free(thr);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_gpg_messages),
            cmocka_unit_test(test_refusals),
            cmocka_unit_test(test_tamper),
            cmocka_unit_test(test_truncation),
            cmocka_unit_test(test_reset_midway),
            cmocka_unit_test(test_sink_error),
            cmocka_unit_test(test_strerror),
            cmocka_unit_test(test_mdc_thread),
            cmocka_unit_test(test_one_byte_partials),
            cmocka_unit_test(test_fused_paths),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
