/* nonblock CMD [ARGS...]: runs CMD with O_NONBLOCK set on its standard input, as a parent
 * that shares its pipe (an event loop, some job runners) may leave it, so that a read
 * from an empty pipe answers EAGAIN instead of waiting for the writer. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
        if (argc < 2) {
                fputs("usage: nonblock CMD [ARGS...]\n", stderr);
                return 2;
        }
        int fl = fcntl(STDIN_FILENO, F_GETFL);
        if (fl < 0 || fcntl(STDIN_FILENO, F_SETFL, fl | O_NONBLOCK) < 0) {
                perror("nonblock: fcntl(stdin)");
                return 2;
        }
        execvp(argv[1], argv + 1);
        perror(argv[1]);
        return 127;
}
