/* The interleaved SHA-NI SHA-1 of the S2K (src/pgp/sha1x.c) against OpenSSL, and
 * pgp_s2k_derive with that path on and forced off; the AES-NI CFB and SHA-1 kernels of
 * src/pgp/cfbx.c against OpenSSL's ECB, CFB and SHA-1. */
#include "../../src/pgp/pgp_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

/* SHA-1 of s zero bytes then count bytes of unit repeated, through EVP. */
static void reference(const uint8_t *unit, size_t len, uint64_t count, unsigned s,
                      uint8_t out[SHA1X_DIGEST])
{
        static const uint8_t zeros[SHA1X_MAX_STREAMS];
        static uint8_t rep[1 << 14];
        size_t copies = sizeof rep / len, full = copies * len;
        for (size_t i = 0; i < copies; i++)
                memcpy(rep + i * len, unit, len);
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        assert_non_null(c);
        assert_true(EVP_DigestInit_ex(c, EVP_sha1(), NULL));
        assert_true(EVP_DigestUpdate(c, zeros, s));
        for (; count >= full; count -= full)
                assert_true(EVP_DigestUpdate(c, rep, full));
        assert_true(EVP_DigestUpdate(c, rep, (size_t)count));
        assert_true(EVP_DigestFinal_ex(c, out, NULL));
        EVP_MD_CTX_free(c);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 3)) ^ (seed >> 2));
}

static uint8_t work[1 << 16];

static void check(const uint8_t *unit, size_t len, uint64_t count, unsigned nstreams)
{
        uint8_t got[SHA1X_MAX_STREAMS][SHA1X_DIGEST], want[SHA1X_DIGEST];
        assert_int_equal(sha1x_s2k(unit, len, count, nstreams, got, work, sizeof work), 0);
        for (unsigned s = 0; s < nstreams; s++) {
                reference(unit, len, count, s, want);
                if (memcmp(got[s], want, sizeof want))
                        fail_msg("unit_len %zu count %llu streams %u: stream %u differs", len,
                                 (unsigned long long)count, nstreams, s);
        }
}

static int need_shani(void **state)
{
        sha1x_force_off(false);
        if (!sha1x_available()) {
                printf("no SHA-NI on this CPU: skipped\n");
                skip();
        }
        return 0;
}

/* Every unit length 1..200 against counts around block, padding and unit boundaries. */
static void test_lengths_and_counts(void **state)
{
        need_shani(state);
        uint8_t unit[200];
        for (size_t len = 1; len <= sizeof unit; len++) {
                fill(unit, len, (unsigned)len);
                const uint64_t counts[] = {0,        1,          len,  55,    56,
                                           57,       63,         64,   65,    119,
                                           120,      127,        128,  129,   2 * len,
                                           64 * len, 1000 + len, 4097, 65543, 3 * 4096 + len - 1};
                for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
                        for (unsigned n = 1; n <= SHA1X_MAX_STREAMS; n++)
                                check(unit, len, counts[i], n);
        }
}

/* gpg's default count, with the unit lengths of short and long passphrases. */
static void test_default_count(void **state)
{
        need_shani(state);
        uint8_t unit[200];
        const size_t lens[] = {9, 18, 29, 64, 97, 200};
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
                fill(unit, lens[i], 99);
                check(unit, lens[i], 65011712, 2);
        }
        fill(unit, 30, 5);
        check(unit, 30, 65011712, 1);
        check(unit, 31, 65011712 + 13, 2);
}

static void test_refusals(void **state)
{
        need_shani(state);
        uint8_t unit[40] = {1}, got[SHA1X_MAX_STREAMS][SHA1X_DIGEST];
        assert_int_equal(sha1x_s2k(unit, 0, 10, 1, got, work, sizeof work), -1);
        assert_int_equal(sha1x_s2k(unit, 40, 10, 0, got, work, sizeof work), -1);
        assert_int_equal(sha1x_s2k(unit, 40, 10, SHA1X_MAX_STREAMS + 1, got, work, sizeof work),
                         -1);
        assert_int_equal(sha1x_s2k(unit, 40, 10, 1, got, work, sha1x_work_size(40) - 1), -1);
        assert_int_equal(sha1x_s2k(unit, 40, 10, 1, got, work, sha1x_work_size(40)), 0);
        sha1x_force_off(true);
        assert_false(sha1x_available());
        assert_int_equal(sha1x_s2k(unit, 40, 10, 1, got, work, sizeof work), -1);
        sha1x_force_off(false);
}

/* pgp_s2k_derive with SHA-1 gives the RFC 4880 key with the SHA-NI path on and off. */
static void test_derive_both_paths(void **state)
{
        EVP_MD *md = EVP_MD_fetch(NULL, "SHA1", NULL);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        assert_non_null(md);
        assert_non_null(ctx);
        static uint8_t scratch[1 << 16];
        /* The last is too long for the table to fit in the scratch: EVP either way. */
        char longpass[301];
        memset(longpass, 'q', 300);
        longpass[300] = 0;
        const char *passes[] = {"", "p", "quire-fuzz", "correct horse battery staple and more",
                                longpass};
        const struct {
                uint8_t type;
                uint32_t count;
                uint64_t limit;
        } kinds[] = {{0, 0, 0},         {1, 0, 0},        {3, 1024, 0},
                     {3, 65536 + 3, 0}, {3, 65011712, 0}, {3, 65011712, 100000}};
        const size_t keylens[] = {16, 24, 32};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
                for (size_t p = 0; p < sizeof passes / sizeof passes[0]; p++)
                        for (size_t j = 0; j < sizeof keylens / sizeof keylens[0]; j++) {
                                if (kinds[k].count == 65011712 && p != 2)
                                        continue;
                                struct pgp_s2k s = {kinds[k].type, 2, {0}, kinds[k].count};
                                fill(s.salt, 8, (unsigned)(k + p));
                                const uint8_t *pw = (const uint8_t *)passes[p];
                                size_t pl = strlen(passes[p]);
                                uint8_t key[2][PGP_MAX_KEY];
                                for (int off = 0; off < 2; off++) {
                                        sha1x_force_off(off);
                                        memset(key[off], 0xa5, sizeof key[off]);
                                        assert_int_equal(pgp_s2k_derive(&s, md, ctx, scratch,
                                                                        sizeof scratch, pw, pl,
                                                                        key[off], keylens[j],
                                                                        kinds[k].limit),
                                                         0);
                                        for (size_t i = 0; i < sizeof scratch; i++)
                                                if (scratch[i])
                                                        fail_msg("scratch not wiped");
                                }
                                sha1x_force_off(false);
                                assert_memory_equal(key[0], key[1], sizeof key[0]);
                                /* And the first bytes are the plain RFC 4880 value. */
                                uint8_t unit[8 + 300], want[SHA1X_DIGEST];
                                size_t saltlen = s.type ? 8 : 0;
                                memcpy(unit, s.salt, saltlen);
                                memcpy(unit + saltlen, pw, pl);
                                size_t ul = saltlen + pl;
                                uint64_t count = s.type == 3 && s.count > ul ? s.count : ul;
                                if (kinds[k].limit && count > kinds[k].limit)
                                        count = kinds[k].limit;
                                if (ul) {
                                        reference(unit, ul, count, 0, want);
                                        assert_memory_equal(key[0], want, 16);
                                }
                        }
        EVP_MD_CTX_free(ctx);
        EVP_MD_free(md);
}

static int need_cfbx(void **state)
{
        cfbx_force_off(false);
        if (!cfbx_available()) {
                printf("no AES-NI/SHA-NI on this CPU: cfbx tests skipped\n");
                skip();
        }
        return 0;
}

static const EVP_CIPHER *aes_ecb(unsigned keylen)
{
        return keylen == 16   ? EVP_aes_128_ecb()
               : keylen == 24 ? EVP_aes_192_ecb()
                              : EVP_aes_256_ecb();
}

static const EVP_CIPHER *aes_cfb(unsigned keylen)
{
        return keylen == 16   ? EVP_aes_128_cfb128()
               : keylen == 24 ? EVP_aes_192_cfb128()
                              : EVP_aes_256_cfb128();
}

/* The key expansion and one-block encryption against OpenSSL's AES, all three key sizes
 * (FIPS 197 appendix C's keys among them), and the refusals. */
static void test_aesx_encrypt(void **state)
{
        need_cfbx(state);
        static const unsigned keylens[] = {16, 24, 32};
        for (size_t k = 0; k < 3; k++)
                for (unsigned seed = 0; seed < 20; seed++) {
                        uint8_t key[32], in[16], got[16], want[16];
                        for (unsigned i = 0; i < 32; i++)
                                key[i] = seed ? (uint8_t)(seed * 37 + i * 11) : (uint8_t)i;
                        fill(in, 16, seed + 1);
                        struct aesx ax;
                        assert_int_equal(cfbx_aes_init(&ax, key, keylens[k]), 0);
                        assert_int_equal(ax.rounds, keylens[k] / 4 + 6);
                        cfbx_aes_encrypt(&ax, in, got);
                        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
                        int outl;
                        assert_true(EVP_EncryptInit_ex2(c, aes_ecb(keylens[k]), key, NULL, NULL));
                        assert_true(EVP_EncryptUpdate(c, want, &outl, in, 16));
                        EVP_CIPHER_CTX_free(c);
                        if (memcmp(got, want, 16))
                                fail_msg("AES-%u, key %u: block differs", keylens[k] * 8, seed);
                }
        struct aesx ax;
        uint8_t key[32] = {0};
        assert_int_equal(cfbx_aes_init(&ax, key, 20), -1);
        cfbx_force_off(true);
        assert_false(cfbx_available());
        assert_int_equal(cfbx_aes_init(&ax, key, 16), -1);
        cfbx_force_off(false);
}

/* sha1s over every length 0..300 and a long stream, in pieces of many sizes, against
 * OpenSSL; the digest covers the tail given to cfbx_sha1_final too. */
static void test_sha1s(void **state)
{
        need_cfbx(state);
        static uint8_t data[70000];
        fill(data, sizeof data, 5);
        static const size_t pieces[] = {1, 7, 15, 16, 17, 63, 64, 65, 4096, 65536};
        for (size_t len = 0; len <= 300 + sizeof data; len += len < 300 ? 1 : sizeof data)
                for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++)
                        for (size_t tail = 0; tail <= 2; tail += 2) {
                                size_t n = len > sizeof data - 2 ? sizeof data - 2 : len;
                                struct sha1s s;
                                cfbx_sha1_init(&s);
                                for (size_t o = 0; o < n; o += pieces[p])
                                        cfbx_sha1_update(&s, data + o,
                                                         n - o < pieces[p] ? n - o : pieces[p]);
                                uint8_t got[20], want[20];
                                cfbx_sha1_final(&s, data + n, tail, got);
                                assert_true(
                                    EVP_Digest(data, n + tail, want, NULL, EVP_sha1(), NULL));
                                if (memcmp(got, want, 20))
                                        fail_msg("%zu bytes in pieces of %zu, tail %zu: differs", n,
                                                 pieces[p], tail);
                        }
}

/* cfbx_aes_cfb decrypts like OpenSSL's CFB (zero IV) over runs of any number of blocks, and
 * the blocks it hashes meanwhile (some before out, some inside what it decrypts) hash as
 * OpenSSL does. */
static void test_aesx_cfb_hash(void **state)
{
        need_cfbx(state);
        enum { MAXB = 300 };
        static uint8_t ct[16 * MAXB], want[16 * MAXB], buf[128 + 16 * MAXB];
        static const unsigned keylens[] = {16, 24, 32};
        fill(ct, sizeof ct, 9);
        for (size_t k = 0; k < 3; k++) {
                uint8_t key[32], zero[16] = {0};
                fill(key, sizeof key, (unsigned)k + 3);
                EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
                int outl;
                assert_true(EVP_DecryptInit_ex2(c, aes_cfb(keylens[k]), key, zero, NULL));
                assert_true(EVP_DecryptUpdate(c, want, &outl, ct, (int)sizeof ct));
                EVP_CIPHER_CTX_free(c);
                struct aesx ax;
                assert_int_equal(cfbx_aes_init(&ax, key, keylens[k]), 0);
                static const size_t nblks[] = {0, 1, 3, 4, 5, 7, 8, 9, 64, 255, MAXB};
                for (size_t b = 0; b < sizeof nblks / sizeof nblks[0]; b++)
                        for (size_t lead = 0; lead <= 128; lead += lead < 24 ? 1 : 13) {
                                size_t nblk = nblks[b], nsha = (16 * nblk + lead) / 64;
                                uint8_t iv[16] = {0}, *out = buf + 128;
                                /* Plaintext already decrypted, in front of out. */
                                fill(buf + 128 - lead, lead, (unsigned)lead);
                                memset(out, 0xa5, 16 * nblk);
                                struct sha1s s;
                                cfbx_sha1_init(&s);
                                cfbx_aes_cfb(&ax, ct, out, nblk, iv, s.h, lead, nsha);
                                if (memcmp(out, want, 16 * nblk))
                                        fail_msg("AES-%u, %zu blocks: plaintext differs",
                                                 keylens[k] * 8, nblk);
                                if (nblk)
                                        assert_memory_equal(iv, ct + 16 * (nblk - 1), 16);
                                s.len = 64 * nsha;
                                uint8_t got[20], dg[20];
                                cfbx_sha1_final(&s, NULL, 0, got);
                                assert_true(EVP_Digest(buf + 128 - lead, 64 * nsha, dg, NULL,
                                                       EVP_sha1(), NULL));
                                if (memcmp(got, dg, 20))
                                        fail_msg("AES-%u, %zu blocks, lead %zu: hash differs",
                                                 keylens[k] * 8, nblk, lead);
                        }
        }
}

/* cfb_decrypt on AES-NI against the EVP path, the stream cut in pieces of every awkward
 * size: the same plaintext and the same keystream state at every cut. */
static void test_cfb_paths(void **state)
{
        need_cfbx(state);
        static uint8_t ct[200000], a[200000], b[200000];
        fill(ct, sizeof ct, 11);
        static const size_t pieces[] = {1, 7, 15, 16, 17, 65536, 0};
        static const unsigned keylens[] = {16, 24, 32};
        for (size_t k = 0; k < 3; k++)
                for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
                        uint8_t key[32];
                        fill(key, sizeof key, (unsigned)(k * 7 + p));
                        struct cfb fast = {.ecb = EVP_CIPHER_CTX_new()},
                                   slow = {.ecb = EVP_CIPHER_CTX_new()};
                        assert_int_equal(cfb_init(&fast, aes_ecb(keylens[k]), key, 16), 0);
                        assert_true(fast.fast);
                        cfbx_force_off(true);
                        assert_int_equal(cfb_init(&slow, aes_ecb(keylens[k]), key, 16), 0);
                        cfbx_force_off(false);
                        assert_false(slow.fast);
                        unsigned x = 1;
                        for (size_t o = 0; o < sizeof ct;) {
                                /* 0: pseudo-random sizes up to 40000 */
                                x = x * 1103515245 + 12345;
                                size_t n = pieces[p] ? pieces[p] : 1 + (x >> 8) % 40000;
                                n = n < sizeof ct - o ? n : sizeof ct - o;
                                assert_int_equal(cfb_decrypt(&fast, ct + o, a + o, n), 0);
                                assert_int_equal(cfb_decrypt(&slow, ct + o, b + o, n), 0);
                                o += n;
                        }
                        if (memcmp(a, b, sizeof a))
                                fail_msg("AES-%u in pieces of %zu: paths differ", keylens[k] * 8,
                                         pieces[p]);
                        cfb_wipe(&fast);
                        assert_false(fast.fast);
                        EVP_CIPHER_CTX_free(fast.ecb);
                        EVP_CIPHER_CTX_free(slow.ecb);
                }
}

/* The same with the whole SHA-1 schedule on the SHA unit, the kernels of CPUs without
 * AVX-512VL. */
static void test_without_avx512(void **state)
{
        need_cfbx(state);
        cfbx_force_no_avx512(true);
        test_sha1s(state);
        test_aesx_cfb_hash(state);
        test_cfb_paths(state);
        cfbx_force_no_avx512(false);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_lengths_and_counts), cmocka_unit_test(test_default_count),
            cmocka_unit_test(test_refusals),           cmocka_unit_test(test_derive_both_paths),
            cmocka_unit_test(test_aesx_encrypt),       cmocka_unit_test(test_sha1s),
            cmocka_unit_test(test_aesx_cfb_hash),      cmocka_unit_test(test_cfb_paths),
            cmocka_unit_test(test_without_avx512),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
