#include "quire/base/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Atomic(struct qlog_sink *) qlog_sink;

void qlog_set_sink(struct qlog_sink *sink)
{
        atomic_store(&qlog_sink, sink);
}

void qlog(const char *fmt, ...)
{
        char line[1024];
        int n = snprintf(line, sizeof line, "quire: ");
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        va_end(ap);
        size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
        if (len > sizeof line - 2)
                len = sizeof line - 2;
        line[len++] = '\n';
        struct qlog_sink *sink = atomic_load(&qlog_sink);
        if (sink) {
                sink->write(sink, line, len);
                return;
        }
        /* A single write keeps lines from different threads whole. */
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w;
}

uint64_t util_now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int util_parse_size(const char *s, uint64_t *out)
{
        char *end;
        errno = 0;
        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno)
                return -EINVAL;
        unsigned shift = 0;
        switch (toupper((unsigned char)*end)) {
        case 0:
                break;
        case 'K':
                shift = 10;
                break;
        case 'M':
                shift = 20;
                break;
        case 'G':
                shift = 30;
                break;
        case 'T':
                shift = 40;
                break;
        default:
                return -EINVAL;
        }
        if (*end) {
                end++;
                if (*end == 'i' || *end == 'I')
                        end++;
                if (*end == 'B' || *end == 'b')
                        end++;
                if (*end)
                        return -EINVAL;
        }
        if (shift && v > (~0ull >> shift))
                return -EINVAL;
        *out = v << shift;
        return 0;
}

void util_hex_encode(const uint8_t *in, size_t len, char *out)
{
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * len] = 0;
}

void util_utc_iso8601(char out[21])
{
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

char *util_read_passphrase(const char *path, size_t *len)
{
        if (!path) {
                const char *env = getenv("QUIRE_PASSPHRASE");
                if (!env) {
                        qlog("no passphrase: give --passphrase-file FILE or set QUIRE_PASSPHRASE");
                        return NULL;
                }
                *len = strlen(env);
                char *copy = strdup(env);
                /* The variable's bytes are what /proc/PID/environ shows for the whole run:
                 * drop it from the environment, then wipe "NAME=value" where it lies. */
                char *entry = (char *)env - strlen("QUIRE_PASSPHRASE=");
                unsetenv("QUIRE_PASSPHRASE");
                explicit_bzero(entry, strlen(entry));
                return copy;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                qlog("passphrase file %s: %s", path, strerror(errno));
                return NULL;
        }
        struct stat st;
        if (fstat(fd, &st) == 0 && (st.st_mode & 077))
                qlog("warning: passphrase file %s can be read by others (mode %03o); chmod 600 it",
                     path, st.st_mode & 0777);
        char buf[4096];
        size_t n = 0;
        for (;;) {
                ssize_t r = read(fd, buf + n, sizeof buf - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                n += (size_t)r;
                if (memchr(buf + n - (size_t)r, '\n', (size_t)r) || n == sizeof buf)
                        break;
        }
        close(fd);
        char *nl = memchr(buf, '\n', n);
        /* Like gpg, only the newline ends the line: a CR before it is part of the passphrase. */
        size_t l = nl ? (size_t)(nl - buf) : n;
        char *p = malloc(l + 1);
        if (p) {
                memcpy(p, buf, l);
                p[l] = 0;
                *len = l;
        }
        explicit_bzero(buf, sizeof buf);
        return p;
}

int util_remove_quire_parts(const char *dir)
{
        DIR *d = opendir(dir);
        if (!d)
                return -errno;
        int removed = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                size_t n = strlen(e->d_name);
                if (n > 11 && !strcmp(e->d_name + n - 11, ".quire-part") &&
                    unlinkat(dirfd(d), e->d_name, 0) == 0)
                        removed++;
        }
        closedir(d);
        return removed;
}

int util_secrets_protect(bool allow_core_dumps)
{
        /* A crash must not write the passphrase or a token to disk; not dumpable also
         * keeps other processes of this user from reading this one's memory. */
        if (!allow_core_dumps && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return -errno;
        return 0;
}

void util_std_fds_guard(void)
{
        /* Started with 0, 1 or 2 closed, the next open() would take that number: the
         * journal would become fd 2 and receive the log lines. */
        int fd;
        while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
                ;
        if (fd > 2)
                close(fd);
}

void util_free_secret(char *s)
{
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
}

int util_write_all(int fd, const void *buf, size_t n)
{
        const char *p = buf;
        while (n) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                p += w;
                n -= (size_t)w;
        }
        return 0;
}

int util_pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
        const char *p = buf;
        while (n) {
                ssize_t w = pwrite(fd, p, n, (off_t)off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                p += w;
                n -= (size_t)w;
                off += (uint64_t)w;
        }
        return 0;
}

int util_mkdirs(const char *path, bool itself)
{
        char buf[4096];
        size_t n = strlen(path);
        if (n >= sizeof buf)
                return -ENAMETOOLONG;
        memcpy(buf, path, n + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(buf, 0777) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (itself && mkdir(buf, 0777) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}
