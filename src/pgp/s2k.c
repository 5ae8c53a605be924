/* The string-to-key function (RFC 9580 3.7): simple, salted and iterated+salted. */
#include "pgp_int.h"

#include <string.h>

/* Hashes count bytes of salt||pass repeated, in updates as large as scratch allows. */
static int hash_repeated(EVP_MD_CTX *ctx, uint8_t *scratch, size_t scratch_len, const uint8_t *unit,
                         size_t unit_len, uint64_t count)
{
        size_t copies = scratch_len / unit_len;
        for (size_t i = 0; i < copies; i++)
                memcpy(scratch + i * unit_len, unit, unit_len);
        size_t full = copies * unit_len;
        while (count >= full) {
                if (!EVP_DigestUpdate(ctx, scratch, full))
                        return -1;
                count -= full;
        }
        return EVP_DigestUpdate(ctx, scratch, (size_t)count) ? 0 : -1;
}

int pgp_s2k_derive(const struct pgp_s2k *s, const EVP_MD *md, EVP_MD_CTX *ctx, uint8_t *scratch,
                   size_t scratch_len, const uint8_t *pass, size_t passlen, uint8_t *key,
                   size_t keylen, uint64_t limit)
{
        size_t dlen = (size_t)EVP_MD_get_size(md);
        size_t saltlen = s->type == 0 ? 0 : 8;
        size_t unit_len = saltlen + passlen;
        if (2 * unit_len > scratch_len)
                return -1;
        /* The unit is built in the scratch tail so no copy of the passphrase outlives it. */
        uint8_t *unit = scratch + scratch_len - unit_len;
        memcpy(unit, s->salt, saltlen);
        memcpy(unit + saltlen, pass, passlen);
        uint64_t count = unit_len;
        if (s->type == 3 && s->count > unit_len)
                count = s->count;
        if (limit && count > limit)
                count = limit < unit_len ? unit_len : limit;
        static const uint8_t zeros[PGP_MAX_KEY];
        uint8_t out[EVP_MAX_MD_SIZE];
        int rc = 0;
        /* SHA-1 (gpg's default) hashes its streams interleaved on SHA-NI when the CPU has
         * it (about twice as fast for a 32-byte key). Its copies of unit and their message
         * schedules go in the scratch head, wiped below; a unit too long for them to fit
         * (passphrases over ~190 bytes) takes EVP. */
        if (s->hash == 2 && dlen == SHA1X_DIGEST && keylen <= SHA1X_MAX_STREAMS * dlen) {
                uint8_t dig[SHA1X_MAX_STREAMS][SHA1X_DIGEST];
                unsigned n = (unsigned)((keylen + dlen - 1) / dlen);
                if (sha1x_s2k(unit, unit_len, count, n, dig, scratch, scratch_len - unit_len) ==
                    0) {
                        memcpy(key, dig, keylen);
                        explicit_bzero(dig, sizeof dig);
                        explicit_bzero(scratch, scratch_len);
                        return 0;
                }
        }
        /* Keys longer than the digest take more hash contexts, the i-th preloaded with i
         * zero bytes. */
        for (size_t done = 0, i = 0; done < keylen && rc == 0; i++) {
                if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, zeros, i)) {
                        rc = -1;
                        break;
                }
                if (s->type == 3)
                        rc = hash_repeated(ctx, scratch, scratch_len - unit_len, unit, unit_len,
                                           count);
                else if (!EVP_DigestUpdate(ctx, unit, unit_len))
                        rc = -1;
                if (rc == 0 && !EVP_DigestFinal_ex(ctx, out, NULL))
                        rc = -1;
                size_t take = keylen - done < dlen ? keylen - done : dlen;
                memcpy(key + done, out, take);
                done += take;
        }
        explicit_bzero(out, sizeof out);
        explicit_bzero(scratch, scratch_len);
        return rc;
}
