/* The interleaved SHA-NI SHA-1 of the S2K (src/pgp/sha1x.c) against OpenSSL, and
 * pgp_s2k_derive with that path on and forced off. */
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

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_lengths_and_counts),
            cmocka_unit_test(test_default_count),
            cmocka_unit_test(test_refusals),
            cmocka_unit_test(test_derive_both_paths),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
