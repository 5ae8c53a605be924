/* quire report's grouping of failures: report_normalize maps the variants of one failure's
 * detail (counts, digests, the barcode) to one key, without allocating. */
#include "report.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>

static bool is_word(char c)
{
        return isalnum((unsigned char)c) || c == '_';
}

struct out {
        char *p;
        size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
        if (n > o->cap - 1 - o->len)
                n = o->cap - 1 - o->len;
        memcpy(o->p + o->len, s, n);
        o->len += n;
}

static bool ends_with(const struct out *o, const char *s)
{
        size_t n = strlen(s);
        return o->len >= n && !memcmp(o->p + o->len - n, s, n);
}

static bool all_hex_with_digit(const char *s, size_t n)
{
        bool digit = false;
        for (size_t i = 0; i < n; i++) {
                if (!isxdigit((unsigned char)s[i]))
                        return false;
                digit |= isdigit((unsigned char)s[i]) != 0;
        }
        return digit;
}

static void put_token(struct out *o, const char *t, size_t n, const char *barcode, size_t blen)
{
        if (blen && n == blen && !memcmp(t, barcode, n)) {
                put(o, "BARCODE", 7);
                return;
        }
        if (n >= 8 && all_hex_with_digit(t, n)) {
                put(o, "HEX", 3);
                return;
        }
        if (!isdigit((unsigned char)t[0])) {
                put(o, t, n);
                return;
        }
        size_t digits = 0;
        while (digits < n && isdigit((unsigned char)t[digits]))
                digits++;
        if (digits == n && n == 3 && ends_with(o, "HTTP ")) {
                put(o, t, n);
                return;
        }
        put(o, "N", 1);
        put(o, t + digits, n - digits);
}

static void drop_suffix(struct out *o, const char *s)
{
        if (ends_with(o, s))
                o->len -= strlen(s);
}

void report_normalize(const char *detail, size_t len, const char *barcode, char *out, size_t cap)
{
        struct out o = {out, 0, cap};
        size_t blen = barcode ? strlen(barcode) : 0;
        for (size_t i = 0; i < len;) {
                if (is_word(detail[i])) {
                        size_t j = i;
                        while (j < len && is_word(detail[j]))
                                j++;
                        put_token(&o, detail + i, j - i, barcode, blen);
                        i = j;
                } else if (isspace((unsigned char)detail[i])) {
                        while (i < len && isspace((unsigned char)detail[i]))
                                i++;
                        if (o.len)
                                put(&o, " ", 1);
                } else {
                        put(&o, detail + i++, 1);
                }
        }
        while (o.len && out[o.len - 1] == ' ')
                o.len--;
        drop_suffix(&o, " (after N retries)");
        drop_suffix(&o, " (after N retry)");
        out[o.len] = 0;
}
