/* For unit tests that check formatted text: each wanted piece must appear in it. */
#ifndef QUIRE_TEST_CONTAINS_H
#define QUIRE_TEST_CONTAINS_H

#include <string.h>

#define assert_contains_all(text, want)                                                            \
        do {                                                                                       \
                for (size_t i_ = 0; i_ < sizeof(want) / sizeof(want)[0]; i_++)                     \
                        if (!strstr((text), (want)[i_]))                                           \
                                fail_msg("missing:\n%s\nin:\n%s", (want)[i_], (text));             \
        } while (0)

#endif
