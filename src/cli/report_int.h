/* quire report's state, private to report.c (which fills it) and report_print.c (which
 * prints it): fixed arrays allocated by report_new, sized when the report is made. */
#ifndef QUIRE_CLI_REPORT_INT_H
#define QUIRE_CLI_REPORT_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "report.h"

#define BARCODE_LEN 64
#define OUTCOME_LEN 32
#define SAMPLE_LEN  160
#define EXAMPLES    2

struct outcome_count {
        char name[OUTCOME_LEN + 1];
        uint64_t lines, bytes;
};

struct reason {
        char key[REPORT_KEY_MAX];
        char outcome[OUTCOME_LEN + 1];
        char sample[SAMPLE_LEN]; /* the first detail as it was written */
        char example[EXAMPLES][BARCODE_LEN + 1];
        uint64_t count;
        uint64_t hash;
};

struct slow {
        double seconds;
        char barcode[BARCODE_LEN + 1];
        char outcome[OUTCOME_LEN + 1];
};

struct report {
        uint64_t lines, malformed, first_malformed, finished;
        bool torn;
        struct outcome_count outcomes[REPORT_MAX_OUTCOMES];
        unsigned noutcomes;
        uint64_t other_outcome_lines;
        uint64_t failures, bytes_all;
        struct reason *reasons; /* REPORT_MAX_REASONS, filled in order of first sight */
        uint32_t *slots;        /* REASON_SLOTS: index + 1 into reasons, 0 = empty */
        unsigned nreasons;
        uint64_t other_reason_failures;
        /* time */
        time_t first_t, last_t;
        time_t prev_t; /* the previous line's time, and its text: parse_time's cache */
        char prev_ts[21];
        bool have_t;
        double active_s, gap_s;
        uint64_t gaps;
        /* durations (7th column) */
        struct slow *slowest; /* a min-heap of the top slowest, by seconds */
        unsigned top, nslow;
        uint64_t timed;
        double timed_sum;
};

#endif
