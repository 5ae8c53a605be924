/* Directories only this user may use: created 0700, checked, locked, swept by name. */
#include "quire/base/privdir.h"
#include "quire/base/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOCK_NAME ".quire-lock"

static int refuse(const char *what, const char *path, const char *why, int err, char *msg,
                  size_t msglen)
{
        snprintf(msg, msglen, "%s %s: %s", what, path, why);
        return err;
}

int privdir_open(const char *what, const char *path, int mkparents, char *msg, size_t msglen)
{
        int err = mkparents ? util_mkdirs(path, false) : 0;
        if (err)
                return refuse(what, path, strerror(-err), err, msg, msglen);
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return refuse(what, path, strerror(errno), -errno, msg, msglen);
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                err = -errno;
                return refuse(what, path,
                              err == -ELOOP || err == -ENOTDIR ? "not a directory (or a link)"
                                                               : strerror(-err),
                              err, msg, msglen);
        }
        struct stat st;
        if (fstat(fd, &st) < 0) {
                err = -errno;
                close(fd);
                return refuse(what, path, strerror(-err), err, msg, msglen);
        }
        const char *why = NULL;
        char buf[128];
        if (st.st_uid != geteuid()) {
                snprintf(buf, sizeof buf,
                         "owned by uid %u, not by this user: quire will not stage books in a "
                         "directory someone else controls",
                         (unsigned)st.st_uid);
                why = buf;
        } else if (st.st_mode & 077) {
                snprintf(buf, sizeof buf,
                         "mode %03o lets others in; quire makes it 0700 (chmod 700 it, or remove "
                         "it)",
                         (unsigned)(st.st_mode & 0777));
                why = buf;
        }
        if (why) {
                close(fd);
                return refuse(what, path, why, -EPERM, msg, msglen);
        }
        return fd;
}

/* The pid a lock holder wrote, or 0. */
static long holder_pid(int fd)
{
        char buf[32];
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        return strtol(buf, NULL, 10);
}

/* The lock file still at its name: a holder that unlinked it on its way out may have
 * released the lock to us on a file no one else will open again. */
static bool still_linked(int dirfd, int fd)
{
        struct stat a, b;
        return fstat(fd, &a) == 0 && fstatat(dirfd, LOCK_NAME, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
               a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int privdir_lock(int dirfd, const char *what, const char *path, int *lockfd, char *msg,
                 size_t msglen)
{
        int fd;
        for (;;) {
                fd = openat(dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return refuse(what, path, strerror(errno), -errno, msg, msglen);
                if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                        break;
                if (still_linked(dirfd, fd))
                        goto locked;
                close(fd);
        }
        int err = errno;
        if (err == EWOULDBLOCK) {
                long pid = holder_pid(fd);
                close(fd);
                if (pid > 0)
                        snprintf(msg, msglen, "%s %s: another quire (pid %ld) is using it", what,
                                 path, pid);
                else
                        snprintf(msg, msglen, "%s %s: another quire is using it", what, path);
                return -EBUSY;
        }
        close(fd);
        return refuse(what, path, strerror(err), -err, msg, msglen);
locked:;
        char pid[32];
        int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
                err = -errno;
                close(fd);
                return refuse(what, path, strerror(-err), err, msg, msglen);
        }
        *lockfd = fd;
        return 0;
}

void privdir_unlock(int dirfd, int lockfd)
{
        if (lockfd < 0)
                return;
        unlinkat(dirfd, LOCK_NAME, 0); /* still ours: the next holder checks the name */
        close(lockfd);
}

int privdir_sweep(int dirfd, const char *suffix)
{
        int fd = dup(dirfd);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                int err = -errno;
                close(fd);
                return err;
        }
        rewinddir(d);
        size_t slen = strlen(suffix);
        int removed = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
                size_t n = strlen(e->d_name);
                struct stat st;
                if (n <= slen || strcmp(e->d_name + n - slen, suffix) ||
                    fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (unlinkat(dirfd, e->d_name, 0) == 0)
                        removed++;
        }
        closedir(d);
        return removed;
}
