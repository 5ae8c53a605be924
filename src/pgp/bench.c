/* include/quire/pgp/pgp_bench.h: a message built in memory for `quire bench decrypt`,
 * encrypted with EVP's CFB, which is OpenPGP's CFB for SEIPD (zero IV, no resync). */
#include "pgp_int.h"
#include "quire/pgp/pgp_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t put_len5(uint8_t *p, uint8_t ctb, uint64_t len)
{
        p[0] = ctb;
        p[1] = 0xff;
        for (int i = 0; i < 4; i++)
                p[2 + i] = (uint8_t)(len >> (24 - 8 * i));
        return 6;
}

static void fill(uint8_t *p, size_t n)
{
        uint64_t x = 0x9e3779b97f4a7c15u;
        for (size_t i = 0; i + 8 <= n; i += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(p + i, &x, 8);
        }
}

EVP_CIPHER *pgp_bench_cipher(int cipher, bool cfb)
{
        const struct pgp_cipher *ci = pgp_cipher_by_id(cipher);
        if (!ci || !ci->evp)
                return NULL;
        if (!cfb)
                return pgp_cipher_fetch(ci);
        char name[32];
        snprintf(name, sizeof name, "%.*s-CFB", (int)strlen(ci->evp) - 4, ci->evp);
        struct pgp_cipher c = *ci;
        c.evp = name;
        return pgp_cipher_fetch(&c);
}

static int encrypt(struct pgp_bench_msg *m, uint8_t *pt, size_t n, const char *pass)
{
        struct pgp_key_job job = {.s2k_type = 3,
                                  .hash = 2,
                                  .cipher = (uint8_t)m->cipher,
                                  .keylen = (uint8_t)m->keylen,
                                  .salt = "saltsalt",
                                  .count = 65536};
        EVP_MD *sha1 = pgp_md_fetch(2);
        EVP_CIPHER *cfb = pgp_bench_cipher(m->cipher, true);
        EVP_CIPHER_CTX *cc = EVP_CIPHER_CTX_new();
        uint8_t zero[16] = {0};
        int outl, rc = -1;
        if (sha1 && cfb && cc && !pgp_key_derive(&job, pass, strlen(pass)) &&
            EVP_Digest(pt, n - 20, pt + n - 20, NULL, sha1, NULL) &&
            EVP_EncryptInit_ex2(cc, cfb, job.key, zero, NULL) &&
            EVP_EncryptUpdate(cc, pt, &outl, pt, (int)n))
                rc = 0;
        memcpy(m->key, job.key, sizeof m->key);
        explicit_bzero(&job, sizeof job);
        EVP_MD_free(sha1);
        EVP_CIPHER_free(cfb);
        EVP_CIPHER_CTX_free(cc);
        return rc;
}

int pgp_bench_build(struct pgp_bench_msg *m, int cipher, size_t size, const char *pass)
{
        const struct pgp_cipher *ci = pgp_cipher_by_id(cipher);
        EVP_CIPHER *ecb = ci ? pgp_cipher_fetch(ci) : NULL;
        memset(m, 0, sizeof *m);
        if (!ecb)
                return -1;
        EVP_CIPHER_free(ecb);
        m->cipher = cipher;
        m->name = ci->name;
        m->blklen = ci->blklen;
        m->keylen = ci->keylen;
        unsigned bs = ci->blklen;
        size_t lit = 6 + size, plain = bs + 2 + 6 + lit + PGP_MDC_LEN;
        m->p = malloc(15 + 7 + plain);
        if (!m->p)
                return -1;
        uint8_t sk[] = {0x8c, 13,  4, (uint8_t)cipher, 3, 2, 's', 'a', 'l', 't', 's', 'a',
                        'l',  't', 96};
        memcpy(m->p, sk, sizeof sk);
        size_t o = sizeof sk;
        o += put_len5(m->p + o, 0xd2, 1 + plain);
        m->p[o++] = 1;
        m->body_off = o;
        uint8_t *pt = m->p + o;
        fill(pt, bs);
        pt[bs] = pt[bs - 2];
        pt[bs + 1] = pt[bs - 1];
        size_t q = bs + 2 + put_len5(pt + bs + 2, 0xcb, lit);
        memcpy(pt + q, "b\0\0\0\0\0", 6);
        fill(pt + q + 6, size);
        q += lit;
        pt[q++] = 0xd3;
        pt[q++] = 0x14;
        m->len = o + q + 20;
        return encrypt(m, pt, q + 20, pass);
}

void pgp_bench_free(struct pgp_bench_msg *m)
{
        free(m->p);
        explicit_bzero(m, sizeof *m);
}

void pgp_bench_sha_ni(bool on)
{
        sha1x_force_off(!on);
}

void pgp_bench_fused(bool on)
{
        cfbx_force_off(!on);
}

bool pgp_bench_fused_available(void)
{
        cfbx_force_off(false);
        return cfbx_available();
}
