/* Fast OpenPGP CFB decryption: P_i = C_i ^ E(C_{i-1}), C_0 = 0. Every keystream block
 * depends only on ciphertext already in hand, so a whole run of blocks goes through one
 * ECB call (AES-NI pipelines it) instead of EVP's serial CFB, then one wide XOR; an AES
 * key on a CPU with AES-NI and SHA-NI goes to cfbx.c's loop instead, which can hash the
 * plaintext for the MDC as it goes. This file keeps the byte position inside a block. */
#include "pgp_int.h"

#include <assert.h>
#include <string.h>

#include <openssl/objects.h>

typedef uint8_t v64 __attribute__((vector_size(64)));

/* memcpy loads and stores keep this free of alignment assumptions; they compile to plain
 * unaligned vector moves. (target_clones would pick AVX-512 at load time, but its ifunc
 * resolver runs before ThreadSanitizer's runtime is up and crashes the TSan build.) */
void cfb_xor(uint8_t *restrict out, const uint8_t *a, const uint8_t *b, size_t n)
{
        size_t i = 0;
        for (; i + 64 <= n; i += 64) {
                v64 x, y;
                memcpy(&x, a + i, sizeof x);
                memcpy(&y, b + i, sizeof y);
                x ^= y;
                memcpy(out + i, &x, sizeof x);
        }
        for (; i < n; i++)
                out[i] = a[i] ^ b[i];
}

static int ecb(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n)
{
        int outl;
        return EVP_EncryptUpdate(c->ecb, out, &outl, in, (int)n) ? 0 : -1;
}

static bool is_aes(const EVP_CIPHER *ciph)
{
        int nid = EVP_CIPHER_get_nid(ciph);
        return nid == NID_aes_128_ecb || nid == NID_aes_192_ecb || nid == NID_aes_256_ecb;
}

int cfb_init(struct cfb *c, const EVP_CIPHER *ciph, const uint8_t *key, unsigned bs)
{
        if (!EVP_EncryptInit_ex2(c->ecb, ciph, key, NULL, NULL))
                return -1;
        EVP_CIPHER_CTX_set_padding(c->ecb, 0);
        /* EVP stays set up as well: the AES-NI path may be turned off between messages. */
        c->fast =
            is_aes(ciph) && !cfbx_aes_init(&c->ax, key, (unsigned)EVP_CIPHER_get_key_length(ciph));
        c->bs = bs;
        c->pos = 0;
        memset(c->iv, 0, sizeof c->iv);
        return 0;
}

void cfb_wipe(struct cfb *c)
{
        if (c->ecb)
                EVP_CIPHER_CTX_reset(c->ecb);
        explicit_bzero(&c->ax, sizeof c->ax);
        explicit_bzero(c->ks, sizeof c->ks);
        c->fast = false;
}

/* Bytes inside one block: the keystream of that block was made when it began. */
static size_t partial(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n)
{
        size_t i = 0;
        for (; i < n && c->pos < c->bs; i++, c->pos++) {
                out[i] = in[i] ^ c->ks[c->pos];
                c->iv[c->pos] = in[i];
        }
        if (c->pos == c->bs)
                c->pos = 0;
        return i;
}

/* Whole blocks, a keystream run at a time: the run stays in L1 between the cipher that
 * writes it and the XOR that reads it. */
static int blocks(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n)
{
        size_t bs = c->bs;
        for (size_t o = 0; o < n; o += CFB_RUN) {
                size_t k = n - o < CFB_RUN ? n - o : CFB_RUN;
                /* EVP takes an int length; runs are far below that. */
                if (o == 0
                        ? ecb(c, c->iv, c->run, bs) || (k > bs && ecb(c, in, c->run + bs, k - bs))
                        : ecb(c, in + o - bs, c->run, k))
                        return -1;
                cfb_xor(out + o, in + o, c->run, k);
        }
        memcpy(c->iv, in + n - bs, bs);
        return 0;
}

/* The keystream of the block that starts at c->iv's successor. */
static int next_ks(struct cfb *c)
{
        if (c->fast) {
                cfbx_aes_encrypt(&c->ax, c->iv, c->ks);
                return 0;
        }
        return ecb(c, c->iv, c->ks, c->bs);
}

int cfb_decrypt_hash(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n, struct sha1s *s,
                     size_t lead, size_t nsha)
{
        assert(c->fast || !nsha);
        size_t i = c->pos ? partial(c, in, out, n) : 0;
        size_t full = (n - i) / c->bs * c->bs;
        if (c->fast && (full || nsha))
                cfbx_aes_cfb(&c->ax, in + i, out + i, full / 16, c->iv, s ? s->h : NULL, lead + i,
                             nsha);
        else if (full && blocks(c, in + i, out + i, full))
                return -1;
        i += full;
        if (i < n) {
                if (next_ks(c))
                        return -1;
                partial(c, in + i, out + i, n - i);
        }
        return 0;
}

int cfb_decrypt(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n)
{
        return cfb_decrypt_hash(c, in, out, n, NULL, 0, 0);
}
