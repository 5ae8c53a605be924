/* OpenPGP algorithm ids (RFC 9580 9.3, 9.5) and their OpenSSL implementations, with the
 * legacy provider loaded only when a message needs it. */
#include "pgp_int.h"

#include <pthread.h>
#include <string.h>

#include <openssl/provider.h>

static const struct pgp_cipher ciphers[] = {
    {1, 16, 8, "IDEA", "IDEA-ECB"},
    {2, 24, 8, "3DES", "DES-EDE3-ECB"},
    {3, 16, 8, "CAST5", "CAST5-ECB"},
    {4, 16, 8, "Blowfish", "BF-ECB"},
    {7, 16, 16, "AES-128", "AES-128-ECB"},
    {8, 24, 16, "AES-192", "AES-192-ECB"},
    {9, 32, 16, "AES-256", "AES-256-ECB"},
    {10, 32, 16, "Twofish", NULL},
    {11, 16, 16, "Camellia-128", "CAMELLIA-128-ECB"},
    {12, 24, 16, "Camellia-192", "CAMELLIA-192-ECB"},
    {13, 32, 16, "Camellia-256", "CAMELLIA-256-ECB"},
};

const struct pgp_cipher *pgp_cipher_by_id(int id)
{
        for (size_t i = 0; i < sizeof ciphers / sizeof ciphers[0]; i++)
                if (ciphers[i].id == id)
                        return &ciphers[i];
        return NULL;
}

const char *pgp_hash_name(int id)
{
        switch (id) {
        case 1:
                return "MD5";
        case 2:
                return "SHA1";
        case 3:
                return "RIPEMD160";
        case 8:
                return "SHA256";
        case 9:
                return "SHA384";
        case 10:
                return "SHA512";
        case 11:
                return "SHA224";
        default:
                return NULL;
        }
}

static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;
static OSSL_LIB_CTX *legacy_ctx;

/* Old ciphers (CAST5, Blowfish, IDEA, RIPEMD-160 on some builds) live in OpenSSL's legacy
 * provider. It goes into a library context of its own, created only when a fetch from
 * the default one has failed: most runs (AES, SHA) never pay for it, and the process's
 * default context stays as OpenSSL configured it. It lives until exit. */
static void load_legacy(void)
{
        legacy_ctx = OSSL_LIB_CTX_new();
        if (legacy_ctx && (!OSSL_PROVIDER_load(legacy_ctx, "legacy") ||
                           !OSSL_PROVIDER_load(legacy_ctx, "default"))) {
                OSSL_LIB_CTX_free(legacy_ctx);
                legacy_ctx = NULL;
        }
}

EVP_CIPHER *pgp_cipher_fetch(const struct pgp_cipher *c)
{
        if (!c->evp)
                return NULL;
        EVP_CIPHER *e = EVP_CIPHER_fetch(NULL, c->evp, NULL);
        if (!e) {
                pthread_once(&legacy_once, load_legacy);
                e = legacy_ctx ? EVP_CIPHER_fetch(legacy_ctx, c->evp, NULL) : NULL;
        }
        return e;
}

EVP_MD *pgp_md_fetch(int id)
{
        const char *name = pgp_hash_name(id);
        if (!name)
                return NULL;
        EVP_MD *m = EVP_MD_fetch(NULL, name, NULL);
        if (!m) {
                pthread_once(&legacy_once, load_legacy);
                m = legacy_ctx ? EVP_MD_fetch(legacy_ctx, name, NULL) : NULL;
        }
        return m;
}
