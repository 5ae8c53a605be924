/* Directories that only this user may use (staging, DEST/.quire-incoming): quire creates
 * them 0700, refuses one it did not make safe (a link, another owner, access for group or
 * others), takes a lock in them before touching anything inside, and sweeps only the
 * names it makes itself.
 *
 * Another local user who can write the parent could otherwise pre-create the directory
 * and plant links where quire will write; another quire process on the same directory
 * would remove the first one's files in flight. */
#ifndef QUIRE_BASE_PRIVDIR_H
#define QUIRE_BASE_PRIVDIR_H

#include <stddef.h>

/* Opens path as a directory (O_DIRECTORY|O_NOFOLLOW), creating it 0700 when missing (its
 * parent must exist unless mkparents). Refused: not a directory, a symbolic link, owned by
 * another user, any access for group or others. Returns the fd, or -errno with a one-line
 * message in msg that starts with what ("--staging /x: ..."). */
int privdir_open(const char *what, const char *path, int mkparents, char *msg, size_t msglen);

/* Takes the directory's lock (a .quire-lock file holding the owner's pid, flock'd), held
 * until *lockfd is closed. -EBUSY with "another quire (pid N) is using PATH" when another
 * process holds it. */
int privdir_lock(int dirfd, const char *what, const char *path, int *lockfd, char *msg,
                 size_t msglen);

/* Releases the lock and removes its file (a later holder checks that the file it locked is
 * still the one at the name, so the removal cannot hand out the lock twice). */
void privdir_unlock(int dirfd, int lockfd);

/* Removes the regular files whose names end in suffix (only those: other tools may share
 * the directory); returns how many, or -errno. Call with the lock held. */
int privdir_sweep(int dirfd, const char *suffix);

#endif
