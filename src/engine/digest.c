/* Whole and per-part SHA-256 of a book's plaintext, inline. */
#include "digest.h"

#include <errno.h>
#include <stdlib.h>

#include "quire/base/util.h"

int digest_init(struct digest *d, uint64_t part_size)
{
        *d = (struct digest){.part_size = part_size};
        d->whole = EVP_MD_CTX_new();
        if (part_size)
                d->part = EVP_MD_CTX_new();
        if (!d->whole || (part_size && !d->part))
                return -ENOMEM;
        digest_reset(d);
        return 0;
}

void digest_destroy(struct digest *d)
{
        EVP_MD_CTX_free(d->whole);
        EVP_MD_CTX_free(d->part);
        free(d->parts);
}

void digest_reset(struct digest *d)
{
        EVP_DigestInit_ex(d->whole, EVP_sha256(), NULL);
        if (d->part)
                EVP_DigestInit_ex(d->part, EVP_sha256(), NULL);
        d->len = 0;
        d->nparts = 0;
}

static int part_push(struct digest *d)
{
        if (d->nparts == d->parts_cap) {
                unsigned cap = d->parts_cap ? d->parts_cap * 2 : 16;
                void *p = realloc(d->parts, cap * sizeof *d->parts);
                if (!p)
                        return -ENOMEM;
                d->parts = p;
                d->parts_cap = cap;
        }
        EVP_DigestFinal_ex(d->part, d->parts[d->nparts++], NULL);
        EVP_DigestInit_ex(d->part, EVP_sha256(), NULL);
        return 0;
}

int digest_update(struct digest *d, const uint8_t *p, size_t n)
{
        EVP_DigestUpdate(d->whole, p, n);
        while (d->part && n) {
                uint64_t room = d->part_size - d->len % d->part_size;
                size_t k = room < n ? (size_t)room : n;
                EVP_DigestUpdate(d->part, p, k);
                p += k;
                n -= k;
                d->len += k;
                if (k == room && part_push(d) < 0)
                        return -ENOMEM;
        }
        if (!d->part)
                d->len += n;
        return 0;
}

int digest_final(struct digest *d)
{
        EVP_DigestFinal_ex(d->whole, d->sha256, NULL);
        util_hex_encode(d->sha256, sizeof d->sha256, d->sha256_hex);
        if (d->part && (d->len == 0 || d->len % d->part_size))
                return part_push(d);
        return 0;
}
