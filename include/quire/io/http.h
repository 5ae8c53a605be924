/* What every libcurl handle of quire starts from (book sources, S3, the OAuth token
 * endpoint, GRIN's lists), in one place: protocols, redirects, TLS trust, timeouts,
 * signals. And one reader of response header lines, so that every module sees statuses,
 * ETags and Retry-After the same way.
 *
 * Redirects are never followed by libcurl: a module that wants them follows them itself
 * after asking http_redirect_check(), so that credentials never travel to another host and
 * never leave TLS. */
#ifndef QUIRE_IO_HTTP_H
#define QUIRE_IO_HTTP_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_ETAG_MAX 128

struct http_baseline {
        const char *ca_file;    /* trust this CA bundle instead of the system's; NULL: system */
        long connect_timeout_s; /* 0: 30 s */
        char *errbuf;           /* CURL_ERROR_SIZE bytes for libcurl's message, or NULL */
};

/* curl_easy_reset() and the baseline: http and https only, no automatic redirects, no
 * signals, TCP keepalive, a connect timeout, quire's User-Agent. Returns 0, or -ENOMEM /
 * -EINVAL when libcurl refused an option (an older libcurl; a programming error). */
int http_easy_reset(CURL *e, const struct http_baseline *b);

/* What the header lines of one answer said. A status line starts a new answer (a
 * "100 Continue" comes before the real one), so only the last answer's fields remain. */
struct http_head {
        long status;
        char etag[HTTP_ETAG_MAX]; /* normalized (http_etag_normalize); "" when absent */
        bool etag_weak;           /* it came with W/ */
        /* Content-Range of a 206: the first byte's offset and the whole length (-1 when
         * absent or unparsable). */
        int64_t range_start, range_total;
        unsigned retry_after_s; /* delta-seconds form only, capped at one hour; 0 absent */
        int64_t content_length; /* -1 when absent */
        bool too_long;          /* a header line longer than HTTP_LINE_MAX was seen */
};
#define HTTP_LINE_MAX (16 * 1024)

void http_head_init(struct http_head *h);
/* Takes one header line as libcurl's CURLOPT_HEADERFUNCTION passes it (with its CRLF). */
void http_head_line(struct http_head *h, const char *line, size_t len);

/* A 206 that ended, `end` bytes into the object, before the object does (a server capping
 * its ranges, its Content-Range saying so): a whole answer, yet not the whole rest. */
bool http_range_ends_short(const struct http_head *h, uint64_t end);

/* When line is the header `name` ("ETag", case-insensitive; "Name:value" and "Name: value"
 * both), returns its value with surrounding blanks and the CRLF removed, length in *vlen.
 * Else NULL. */
const char *http_header_value(const char *line, size_t len, const char *name, size_t *vlen);

/* An ETag as compared: a leading weak marker "W/" and one pair of surrounding quotes
 * removed, nothing else ("\"WA\"" stays "WA"). Cut to outlen-1 bytes. */
void http_etag_normalize(const char *v, size_t n, char *out, size_t outlen);

/* A transfer libcurl gave up on, in the words the metrics count retries by: "reset",
 * "short", "timeout", "connect", "tls" or "network". */
const char *http_failure_cause(CURLcode rc);

/* Whether a redirect from `from` to `to` (absolute URLs) may be followed, and whether the
 * request's credentials may go with it. Refused (returns -EPERM with why set): leaving
 * https for http, a scheme other than http(s). Credentials go only when scheme, host and
 * port are those of `from`. */
int http_redirect_check(const char *from, const char *to, bool *keep_credentials, const char **why);

#endif
