/* Fast OpenPGP CFB decryption: P_i = C_i ^ E(C_{i-1}), C_0 = 0. Every keystream block
 * depends only on ciphertext already in hand, so a whole run of blocks goes through one
 * ECB call (AES-NI pipelines it) instead of EVP's serial CFB, then one wide XOR. */
#include "pgp_int.h"

#include <string.h>

typedef uint8_t v16 __attribute__((vector_size(16)));

void cfb_xor(uint8_t *restrict dst, const uint8_t *restrict src, size_t n)
{
        size_t i = 0;
        /* memcpy loads and stores keep this free of alignment assumptions; they compile to
         * plain unaligned vector moves. */
        for (; i + 64 <= n; i += 64) {
                v16 a[4], b[4];
                memcpy(a, dst + i, sizeof a);
                memcpy(b, src + i, sizeof b);
                a[0] ^= b[0];
                a[1] ^= b[1];
                a[2] ^= b[2];
                a[3] ^= b[3];
                memcpy(dst + i, a, sizeof a);
        }
        for (; i < n; i++)
                dst[i] ^= src[i];
}

static int ecb(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n)
{
        int outl;
        return EVP_EncryptUpdate(c->ecb, out, &outl, in, (int)n) ? 0 : -1;
}

int cfb_init(struct cfb *c, const EVP_CIPHER *ciph, const uint8_t *key, unsigned bs)
{
        if (!EVP_EncryptInit_ex2(c->ecb, ciph, key, NULL, NULL))
                return -1;
        EVP_CIPHER_CTX_set_padding(c->ecb, 0);
        c->bs = bs;
        c->pos = 0;
        memset(c->iv, 0, sizeof c->iv);
        return 0;
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

int cfb_decrypt(struct cfb *c, const uint8_t *in, uint8_t *out, size_t n)
{
        size_t bs = c->bs;
        size_t i = c->pos ? partial(c, in, out, n) : 0;
        size_t full = (n - i) / bs * bs;
        if (full) {
                /* EVP takes an int length; callers pass slices far below that. */
                if (ecb(c, c->iv, out + i, bs) ||
                    (full > bs && ecb(c, in + i, out + i + bs, full - bs)))
                        return -1;
                cfb_xor(out + i, in + i, full);
                memcpy(c->iv, in + i + full - bs, bs);
                i += full;
        }
        if (i < n) {
                if (ecb(c, c->iv, c->ks, bs))
                        return -1;
                partial(c, in + i, out + i, n - i);
        }
        return 0;
}
