/* Small helpers every module uses: logging, time, sizes, hex. */
#ifndef QUIRE_UTIL_H
#define QUIRE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The git version ("4dc2db6", "v1.0-3-gabc1234-dirty"), from one object the Makefile
 * remakes whenever it changes (libquire.a holds it). */
extern const char util_version[];

/* The struct that holds member m at p (an op embedded in its owner). */
#define container_of(p, type, m) ((type *)((char *)(p)-offsetof(type, m)))

/* write(2)/pwrite(2) until all of p[0..n) is written, through EINTR and short writes.
 * 0 or -errno (-EIO when the kernel wrote nothing and said no error). */
int util_write_all(int fd, const void *p, size_t n);
int util_pwrite_all(int fd, const void *p, size_t n, uint64_t off);
/* mkdir -p of path's parents (0777, as the umask allows), and of path itself when
 * itself is true. 0 or -errno (-ENAMETOOLONG past 4095 bytes). */
int util_mkdirs(const char *path, bool itself);

/* One line on stderr, prefixed "quire: ". Thread-safe (one write per line). */
void qlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* While one is set, qlog hands every line (ending in '\n') to sink->write, on the calling
 * thread, instead of writing it: a live view on the terminal redraws itself around it.
 * NULL: plain writes again. */
struct qlog_sink {
        void (*write)(struct qlog_sink *sink, const char *line, size_t len);
};
void qlog_set_sink(struct qlog_sink *sink);

/* CLOCK_MONOTONIC in ns. */
uint64_t util_now_ns(void);

/* "64MiB", "5M", "1GiB", "4096", "10KiB"; binary units (K = KiB). Returns 0 or -EINVAL. */
int util_parse_size(const char *s, uint64_t *out);

/* lower-case hex of len bytes into out (2*len+1 bytes). */
void util_hex_encode(const uint8_t *in, size_t len, char *out);

/* UTC ISO 8601, "2026-11-29T02:40:00Z" (21 bytes with NUL). */
void util_utc_iso8601(char out[21]);

/* Keeps secrets out of core dumps: the process is made not dumpable (PR_SET_DUMPABLE 0)
 * unless allow_core_dumps. 0 or -errno. */
int util_secrets_protect(bool allow_core_dumps);
/* Opens /dev/null on whichever of fds 0, 1 and 2 the process was started without. */
void util_std_fds_guard(void);

/* Wipes a secret string (passphrase, token, key) and frees it; NULL is fine. */
void util_free_secret(char *s);

/* Removes the "*.quire-part" files a killed run left in dir; returns how many, or -errno
 * when dir cannot be read (-ENOENT when it does not exist). */
int util_remove_quire_parts(const char *dir);

/* Reads a passphrase: first line of path (up to its "\n", as
 * gpg --passphrase-file reads it), or $QUIRE_PASSPHRASE when path is NULL. Warns when the
 * file is readable by group or others. The variable is wiped in place and unset once
 * read (it would show in /proc/PID/environ for the whole run). Returns a malloc'd string or NULL
 * with a message already printed. */
char *util_read_passphrase(const char *path, size_t *len);

#endif
