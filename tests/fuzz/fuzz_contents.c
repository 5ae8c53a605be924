/* libFuzzer harness for the contents reader: gzip, tar headers, the members' MD5s,
 * checksum.md5, the page escaping and the METS parser. The first byte picks the shape:
 * even, the rest is the tar.gz as is (truncated or broken gzip); odd, the rest is a tar
 * that the harness gzips first, so mutations reach tar headers, page texts and the XML
 * (a billion-laughs METS, a member claiming 2^40 bytes; seeds from
 * tests/fuzz/mkseeds_contents). The ring is 4 KiB, so feeds come back short and resume on
 * ready(). Every run must end with a clear outcome, whole outputs only when it says so,
 * and nothing left in the spill directory. */
#include "quire/contents/contents.h"

#include <dirent.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char spill_dir[] = "/tmp/quire-fuzz-spill-XXXXXX";

static void on_ready(void *arg)
{
        sem_post(arg);
}

static size_t gzip_into(const uint8_t *in, size_t n, uint8_t **out)
{
        z_stream z = {0};
        if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                abort();
        size_t cap = deflateBound(&z, n) + 64;
        *out = malloc(cap);
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)n;
        z.next_out = *out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) != Z_STREAM_END)
                abort();
        size_t len = cap - z.avail_out;
        deflateEnd(&z);
        return len;
}

static bool spill_dir_empty(void)
{
        DIR *d = opendir(spill_dir);
        struct dirent *e;
        bool empty = true;
        while (d && (e = readdir(d)))
                empty &= !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        if (d)
                closedir(d);
        return empty;
}

static void check_gzip_whole(int fd)
{
        /* An OCR output said to be written must be a whole gzip stream. */
        struct stat st;
        if (fstat(fd, &st) || st.st_size < 20)
                abort();
        uint8_t *p = malloc((size_t)st.st_size), *out = malloc(1 << 16);
        if (pread(fd, p, (size_t)st.st_size, 0) != st.st_size)
                abort();
        z_stream z = {0};
        if (inflateInit2(&z, 15 + 16) != Z_OK)
                abort();
        z.next_in = p;
        z.avail_in = (uInt)st.st_size;
        int r;
        do {
                z.next_out = out;
                z.avail_out = 1 << 16;
                r = inflate(&z, Z_NO_FLUSH);
        } while (r == Z_OK);
        if (r != Z_STREAM_END)
                abort();
        inflateEnd(&z);
        free(p);
        free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (!size)
                return 0;
        static bool init;
        if (!init) {
                if (!mkdtemp(spill_dir))
                        abort();
                init = true;
        }
        uint8_t *gz = NULL;
        const uint8_t *in = data + 1;
        size_t n = size - 1;
        if (data[0] & 1)
                n = gzip_into(data + 1, size - 1, &gz), in = gz;
        int ocr = memfd_create("ocr", MFD_CLOEXEC), marc = memfd_create("marc", MFD_CLOEXEC);
        sem_t ready;
        sem_init(&ready, 0, 0);
        struct contents_cfg cfg = {.ocr_fd = ocr,
                                   .marc_fd = marc,
                                   .verify = true,
                                   .spill_dir = spill_dir,
                                   .ring_bytes = 4096,
                                   .ready = on_ready,
                                   .arg = &ready};
        struct contents *c;
        if (ocr < 0 || marc < 0 || contents_new(&c, &cfg))
                abort();
        for (size_t off = 0; off < n;) {
                size_t k = contents_feed(c, in + off, n - off);
                off += k;
                if (!k)
                        sem_wait(&ready);
        }
        contents_finish(c);
        contents_wait(c);
        const struct contents_result *r = contents_result(c);
        char detail[512];
        if (r->archive == CONTENTS_READING || !contents_format_detail(r, detail, sizeof detail))
                abort();
        if (r->archive != CONTENTS_OK && (r->ocr_written || r->marc_written))
                abort();
        if (r->ocr_written)
                check_gzip_whole(ocr);
        if (!r->ocr_written && !r->ocr_skipped)
                abort();
        contents_free(c);
        sem_destroy(&ready);
        close(ocr);
        close(marc);
        free(gz);
        if (!spill_dir_empty())
                abort();
        return 0;
}
