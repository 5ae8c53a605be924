/* The contents reader's state, private to its two halves: reader.c (the ring the caller
 * fills, the thread and its life) and members.c (what the thread does with the archive:
 * each member read into the outputs, then the outputs written). */
#ifndef QUIRE_CONTENTS_READER_INT_H
#define QUIRE_CONTENTS_READER_INT_H

#include "contents_int.h"

#include <archive.h>
#include <openssl/evp.h>
#include <pthread.h>

struct contents {
        struct contents_cfg cfg;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake; /* to the reader: data, finish or abort */
        pthread_cond_t done_cond;
        pthread_cond_t room; /* to a feeder waiting in contents_feed_all */
        /* the ring, under lock: [tail, tail+count) holds data, of which the first
         * `lent` bytes are libarchive's until its next read call */
        uint8_t *ring;
        size_t cap, tail, count, lent;
        bool finished, aborting, settled, done, want_ready;
        struct contents_result res;
        /* the reader thread's own */
        struct archive *a;
        EVP_MD_CTX *md5;
        struct ocr *ocr;
        struct marc *marc;
        struct sums *sums;
        bool marc_tried, marc_found, eof_seen, list_seen;
        uint32_t max_page; /* the highest page text number */
        const char *marc_why;
        uint64_t xml_bytes;
        bool xml_bad_utf8;
        unsigned u8_need; /* continuation bytes the XML member still owes */
};

/* On the reader thread, after archive_read_open(): reads every member, and sets
 * res.archive to the outcome. */
void contents_read_archive(struct contents *c);
/* Sets res.archive from libarchive's error (truncated, not a tar.gz, corrupt); any_entry:
 * whether a header was read before it. */
void contents_archive_failed(struct contents *c, bool any_entry);
/* After the caller's contents_finish(): the checksum verdict, BARCODE_ocr.jsonl.gz and
 * BARCODE_marc.json, written to the caller's fds. */
void contents_write_outputs(struct contents *c);

#endif
