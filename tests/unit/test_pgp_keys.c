/* Messages with one, two and hundreds of symmetric-key packets (SKESK), crafted here from
 * RFC 9580's packet formats (5.3 SKESK v4, 5.13 SEIPD v1, 5.9 literal data): decrypted
 * with keys derived inline and deferred to the caller, the PGP_MAX_DERIVE bound, and
 * gpg's verdict on the same bytes where gpg is installed. */
#include "quire/pgp/pgp.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static const char pass[] = "right horse";
static const char other[] = "other horse";
static const uint8_t plain[] = "the plaintext of a crafted message\n";

struct buf {
        uint8_t *p;
        size_t len, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
        if (b->len + n > b->cap) {
                b->cap = (b->len + n) * 2 + 256;
                b->p = realloc(b->p, b->cap);
                assert_non_null(b->p);
        }
        memcpy(b->p + b->len, p, n);
        b->len += n;
}

static void put_byte(struct buf *b, uint8_t v)
{
        put(b, &v, 1);
}

/* A new-format header (RFC 9580 4.2.1) with a one-, two- or five-octet length. */
static void put_header(struct buf *b, int tag, size_t len)
{
        put_byte(b, (uint8_t)(0xc0 | tag));
        if (len < 192) {
                put_byte(b, (uint8_t)len);
        } else if (len < 8384) {
                put_byte(b, (uint8_t)(((len - 192) >> 8) + 192));
                put_byte(b, (uint8_t)((len - 192) & 0xff));
        } else {
                uint8_t l[5] = {0xff, (uint8_t)(len >> 24), (uint8_t)(len >> 16),
                                (uint8_t)(len >> 8), (uint8_t)len};
                put(b, l, 5);
        }
}

static void cfb_encrypt(const uint8_t *key, const uint8_t *in, uint8_t *out, size_t n, bool enc)
{
        static const uint8_t zero[16];
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        int outl;
        assert_non_null(c);
        assert_true(EVP_CipherInit_ex2(c, EVP_aes_128_cfb128(), key, zero, enc, NULL));
        assert_true(EVP_CipherUpdate(c, out, &outl, in, (int)n));
        EVP_CIPHER_CTX_free(c);
}

/* Iterated and salted S2K, SHA-1, count byte 0x60 (65536 bytes), AES-128. */
static struct pgp_key_job s2k_job(uint32_t salt_no)
{
        struct pgp_key_job j = {.s2k_type = 3, .hash = 2, .cipher = 7, .keylen = 16};
        memcpy(j.salt, "saltsalt", 8);
        memcpy(j.salt + 4, &salt_no, 4);
        j.count = 65536;
        return j;
}

static void kek(const char *pw, uint32_t salt_no, uint8_t key[16])
{
        struct pgp_key_job j = s2k_job(salt_no);
        assert_int_equal(pgp_key_derive(&j, pw, strlen(pw)), 0);
        memcpy(key, j.key, 16);
}

static void put_skesk_head(struct buf *b, uint32_t salt_no, size_t esk_len)
{
        struct pgp_key_job j = s2k_job(salt_no);
        put_header(b, 3, 13 + esk_len);
        uint8_t h[4] = {4, 7, 3, 2};
        put(b, h, 4);
        put(b, j.salt, 8);
        put_byte(b, 0x60);
}

/* An SKESK whose S2K key is the session key itself (what `gpg --symmetric` writes). */
static void put_skesk(struct buf *b, uint32_t salt_no)
{
        put_skesk_head(b, salt_no, 0);
}

/* An SKESK carrying the session key (AES-128) encrypted with pw's S2K key. */
static void put_skesk_esk(struct buf *b, const char *pw, uint32_t salt_no, const uint8_t sk[16])
{
        uint8_t k[16], in[17] = {7}, esk[17];
        memcpy(in + 1, sk, 16);
        kek(pw, salt_no, k);
        cfb_encrypt(k, in, esk, 17, true);
        put_skesk_head(b, salt_no, 17);
        put(b, esk, 17);
}

/* A salt whose SKESK, made for `other`, does not unwrap with `pass` either: its session
 * key decrypts to an algorithm byte that is no 16-byte cipher. */
static uint32_t foreign_salt(uint32_t from)
{
        for (uint32_t s = from;; s++) {
                uint8_t ko[16], kp[16], sk[16] = {0}, in[17] = {7}, esk[17], out[17];
                memcpy(in + 1, sk, 16);
                kek(other, s, ko);
                cfb_encrypt(ko, in, esk, 17, true);
                kek(pass, s, kp);
                cfb_encrypt(kp, esk, out, 17, false);
                if (out[0] != 7 && out[0] != 11 && out[0] != 1 && out[0] != 3 && out[0] != 4)
                        return s;
        }
}

/* SEIPD v1 around a literal data packet, encrypted with the AES-128 session key. */
static void put_seipd(struct buf *b, const uint8_t sk[16])
{
        struct buf pt = {0};
        uint8_t prefix[18];
        assert_int_equal(RAND_bytes(prefix, 16), 1);
        prefix[16] = prefix[14];
        prefix[17] = prefix[15];
        put(&pt, prefix, 18);
        put_header(&pt, 11, 6 + sizeof plain - 1);
        put(&pt, "b\0\0\0\0\0", 6);
        put(&pt, plain, sizeof plain - 1);
        put(&pt, "\xd3\x14", 2);
        uint8_t md[20];
        assert_true(EVP_Digest(pt.p, pt.len, md, NULL, EVP_sha1(), NULL));
        put(&pt, md, 20);
        uint8_t *ct = malloc(pt.len);
        assert_non_null(ct);
        cfb_encrypt(sk, pt.p, ct, pt.len, true);
        put_header(b, 18, 1 + pt.len);
        put_byte(b, 1);
        put(b, ct, pt.len);
        free(ct);
        free(pt.p);
}

/* n SKESKs, the first n-1 for another passphrase (their keys do not unwrap), the last
 * for pass; all with S2K parameters of their own. */
static struct buf make_message(unsigned n)
{
        struct buf b = {0};
        uint8_t sk[16];
        assert_int_equal(RAND_bytes(sk, 16), 1);
        uint32_t salt = 1;
        for (unsigned i = 0; i + 1 < n; i++) {
                salt = foreign_salt(salt + 1);
                put_skesk_esk(&b, other, salt, sk);
        }
        put_skesk_esk(&b, pass, 0, sk);
        put_seipd(&b, sk);
        return b;
}

struct run {
        struct buf out;
        unsigned asked;  /* PGP_NEEDKEY answers, each followed by a derivation */
        size_t consumed; /* by the first pgp_feed that stopped for a key */
        int rc;
};

static int collect(void *ctx, const uint8_t *p, size_t n)
{
        put(ctx, p, n);
        return 0;
}

/* Feeds msg in chunks of `chunk` bytes; with defer, derives every key asked for the way
 * the engine does: derive, offer, feed the rest of the chunk. */
static struct run decrypt(const struct buf *msg, size_t chunk, bool defer)
{
        struct run r = {0};
        struct pgp_dec *d;
        assert_int_equal(pgp_new(&d), 0);
        pgp_set_defer_keys(d, defer);
        pgp_reset(d, pass, strlen(pass), collect, &r.out);
        for (size_t o = 0; o < msg->len && !r.rc;) {
                size_t k = msg->len - o < chunk ? msg->len - o : chunk;
                r.rc = pgp_feed(d, msg->p + o, k);
                size_t used = pgp_consumed(d);
                assert_true(used <= k);
                if (r.rc == PGP_NEEDKEY) {
                        struct pgp_key_job job;
                        if (!r.asked++)
                                r.consumed = o + used;
                        /* Fed again before the offer: nothing is taken. */
                        assert_int_equal(pgp_feed(d, msg->p + o + used, k - used), PGP_NEEDKEY);
                        assert_int_equal(pgp_consumed(d), 0);
                        pgp_key_wanted(d, &job);
                        assert_false(job.ready);
                        assert_int_equal(pgp_key_derive(&job, pass, strlen(pass)), 0);
                        pgp_key_offer(d, &job);
                        r.rc = 0;
                } else {
                        assert_int_equal(used, r.rc ? used : k);
                }
                o += used;
        }
        if (!r.rc)
                r.rc = pgp_finish(d);
        if (r.rc == PGP_ELIMIT)
                assert_non_null(strstr(pgp_detail(d), "S2K bomb"));
        pgp_free(d);
        return r;
}

static void expect_plain(const struct run *r)
{
        assert_int_equal(r->rc, 0);
        assert_int_equal(r->out.len, sizeof plain - 1);
        assert_memory_equal(r->out.p, plain, sizeof plain - 1);
}

/* gpg's exit status on msg; gpg is a test dependency (tools/deps.sh installs it). */
static int gpg_verdict(const struct buf *msg, struct buf *out)
{
        if (system("gpg --version >/dev/null 2>&1"))
                fail_msg("gpg is not installed: it judges the crafted messages");
        char dir[] = "/tmp/quire-test-keys.XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[256], cmd[1024];
        snprintf(path, sizeof path, "%s/pw", dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "%s\n", pass);
        fclose(f);
        snprintf(path, sizeof path, "%s/msg.gpg", dir);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(msg->p, 1, msg->len, f), msg->len);
        fclose(f);
        snprintf(cmd, sizeof cmd,
                 "cd %s && gpg --homedir . --batch --quiet --pinentry-mode loopback "
                 "--passphrase-file pw --decrypt -o out msg.gpg 2>/dev/null",
                 dir);
        int rc = system(cmd);
        snprintf(path, sizeof path, "%s/out", dir);
        out->len = 0;
        if ((f = fopen(path, "rb"))) {
                uint8_t tmp[4096];
                size_t n;
                while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
                        put(out, tmp, n);
                fclose(f);
        }
        snprintf(cmd, sizeof cmd, "gpgconf --homedir %s --kill all >/dev/null 2>&1; rm -rf %s", dir,
                 dir);
        assert_int_equal(system(cmd), 0);
        return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static void test_one_skesk(void **state)
{
        struct buf msg = {0};
        uint8_t sk[16];
        kek(pass, 0, sk); /* gpg's way: the S2K key is the session key */
        put_skesk(&msg, 0);
        put_seipd(&msg, sk);
        static const size_t chunks[] = {1, 7, 1 << 20};
        for (size_t i = 0; i < 3; i++) {
                struct run inl = decrypt(&msg, chunks[i], false);
                expect_plain(&inl);
                assert_int_equal(inl.asked, 0);
                struct run def = decrypt(&msg, chunks[i], true);
                expect_plain(&def);
                assert_int_equal(def.asked, 1);
                assert_int_equal(def.consumed, 2 + 13); /* exactly the SKESK */
                free(inl.out.p);
                free(def.out.p);
        }
        struct buf g = {0};
        assert_int_equal(gpg_verdict(&msg, &g), 0);
        assert_int_equal(g.len, sizeof plain - 1);
        assert_memory_equal(g.p, plain, g.len);
        free(g.p);
        free(msg.p);
}

/* The wrong one first, the right one last: both derived, the second opens it. */
static void test_two_skesks(void **state)
{
        struct buf msg = make_message(2), g = {0};
        struct run inl = decrypt(&msg, 1 << 20, false), def = decrypt(&msg, 3, true);
        expect_plain(&inl);
        expect_plain(&def);
        assert_int_equal(def.asked, 2);
        /* gpg tries the first packet only ("Bad session key"): quire is more lenient. */
        assert_int_equal(gpg_verdict(&msg, &g), 2);
        free(inl.out.p);
        free(def.out.p);
        free(g.p);
        free(msg.p);
}

/* PGP_MAX_DERIVE packets still open; hundreds stop after PGP_MAX_DERIVE derivations. */
static void test_bound(void **state)
{
        struct buf most = make_message(PGP_MAX_DERIVE), many = make_message(300), g = {0};
        struct run a = decrypt(&most, 1 << 20, true), b = decrypt(&many, 1 << 20, true),
                   c = decrypt(&many, 5, false);
        expect_plain(&a);
        assert_int_equal(a.asked, PGP_MAX_DERIVE);
        assert_int_equal(b.rc, PGP_ELIMIT);
        assert_int_equal(b.asked, PGP_MAX_DERIVE);
        assert_int_equal(b.out.len, 0);
        assert_int_equal(c.rc, PGP_ELIMIT);
        assert_int_equal(gpg_verdict(&many, &g), 2); /* gpg refuses it too */
        free(a.out.p);
        free(b.out.p);
        free(c.out.p);
        free(g.p);
        free(most.p);
        free(many.p);
}

/* Hundreds of packets sharing one S2K cost one derivation: the bound counts keys. */
static void test_shared_s2k(void **state)
{
        struct buf msg = {0};
        uint8_t sk[16], k[16], junk[17], out[17];
        assert_int_equal(RAND_bytes(sk, 16), 1);
        kek(pass, 0, k);
        for (int i = 0; i < 300; i++) {
                /* Random session-key blobs that do not unwrap (checked, not assumed). */
                do {
                        assert_int_equal(RAND_bytes(junk, 17), 1);
                        cfb_encrypt(k, junk, out, 17, false);
                } while (out[0] == 7 || out[0] == 11 || out[0] == 1 || out[0] == 3 || out[0] == 4);
                put_skesk_head(&msg, 0, 17);
                put(&msg, junk, 17);
        }
        put_skesk_esk(&msg, pass, 0, sk);
        put_seipd(&msg, sk);
        struct run r = decrypt(&msg, 1 << 20, true);
        expect_plain(&r);
        assert_int_equal(r.asked, 1);
        free(r.out.p);
        free(msg.p);
}

static void test_deferred_edges(void **state)
{
        struct buf msg = make_message(1), out = {0};
        struct pgp_dec *d;
        struct pgp_key_job job;
        assert_int_equal(pgp_new(&d), 0);
        pgp_set_defer_keys(d, true);
        /* The SKESK alone, then the end before any offer: a truncated message. */
        pgp_reset(d, pass, strlen(pass), collect, &out);
        assert_int_equal(pgp_feed(d, msg.p, 2 + 13 + 17), PGP_NEEDKEY);
        assert_int_equal(pgp_consumed(d), 2 + 13 + 17);
        assert_int_equal(pgp_finish(d), PGP_ETRUNC);
        /* A derivation that failed, offered, fails the message. */
        pgp_reset(d, pass, strlen(pass), collect, &out);
        assert_int_equal(pgp_feed(d, msg.p, msg.len), PGP_NEEDKEY);
        pgp_key_wanted(d, &job);
        job.ready = false;
        pgp_key_offer(d, &job);
        assert_true(pgp_feed(d, msg.p + 32, msg.len - 32) < 0);
        /* A reset abandons the wait; the mode stays on. */
        pgp_reset(d, pass, strlen(pass), collect, &out);
        assert_int_equal(pgp_feed(d, msg.p, msg.len), PGP_NEEDKEY);
        pgp_key_wanted(d, &job);
        assert_int_equal(pgp_key_derive(&job, pass, strlen(pass)), 0);
        pgp_key_offer(d, &job);
        assert_int_equal(pgp_feed(d, msg.p + pgp_consumed(d), msg.len - 32), 0);
        assert_int_equal(pgp_finish(d), 0);
        assert_int_equal(out.len, sizeof plain - 1);
        assert_int_equal(pgp_bytes_in(d), msg.len);
        /* A key offered up front (pgp_key_peek's way) is used without asking. */
        out.len = 0;
        assert_int_equal(pgp_key_peek(msg.p, msg.len, &job), 0);
        assert_int_equal(pgp_key_derive(&job, pass, strlen(pass)), 0);
        pgp_reset(d, pass, strlen(pass), collect, &out);
        pgp_key_offer(d, &job);
        assert_int_equal(pgp_feed(d, msg.p, msg.len), 0);
        assert_int_equal(pgp_finish(d), 0);
        assert_int_equal(out.len, sizeof plain - 1);
        explicit_bzero(&job, sizeof job);
        pgp_free(d);
        free(out.p);
        free(msg.p);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_one_skesk),      cmocka_unit_test(test_two_skesks),
            cmocka_unit_test(test_bound),          cmocka_unit_test(test_shared_s2k),
            cmocka_unit_test(test_deferred_edges),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
