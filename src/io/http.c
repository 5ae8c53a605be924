/* The libcurl baseline every handle starts from, and the one reader of header lines. */
#include "quire/io/http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quire/base/util.h"

int http_easy_reset(CURL *e, const struct http_baseline *b)
{
        curl_easy_reset(e);
        CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
        do {                                                                                       \
                if (rc == CURLE_OK)                                                                \
                        rc = curl_easy_setopt(e, opt, val);                                        \
        } while (0)
        SET(CURLOPT_NOSIGNAL, 1L);
        SET(CURLOPT_PROTOCOLS_STR, "http,https");
        SET(CURLOPT_REDIR_PROTOCOLS_STR, "https");
        SET(CURLOPT_FOLLOWLOCATION, 0L);
        char agent[96];
        snprintf(agent, sizeof agent, "quire/%s", util_version); /* libcurl copies it */
        SET(CURLOPT_USERAGENT, agent);
        SET(CURLOPT_TCP_KEEPALIVE, 1L);
        SET(CURLOPT_CONNECTTIMEOUT, b->connect_timeout_s > 0 ? b->connect_timeout_s : 30L);
        if (b->errbuf) {
                b->errbuf[0] = 0;
                SET(CURLOPT_ERRORBUFFER, b->errbuf);
        }
        /* A bundle replaces the system's store, as curl --cacert does: OpenSSL's directory
         * of the system store is not at the same place on every distribution. */
        if (b->ca_file)
                SET(CURLOPT_CAINFO, b->ca_file);
#undef SET
        if (rc == CURLE_OUT_OF_MEMORY)
                return -ENOMEM;
        return rc == CURLE_OK ? 0 : -EINVAL;
}

void http_head_init(struct http_head *h)
{
        h->status = 0;
        h->etag[0] = 0;
        h->etag_weak = false;
        h->range_start = h->range_total = -1;
        h->retry_after_s = 0;
        h->content_length = -1;
        h->too_long = false;
}

bool http_range_ends_short(const struct http_head *h, uint64_t end)
{
        return h->status == 206 && h->range_total >= 0 && end < (uint64_t)h->range_total;
}

const char *http_header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
        size_t nlen = strlen(name);
        if (len <= nlen || line[nlen] != ':' || strncasecmp(line, name, nlen))
                return NULL;
        const char *v = line + nlen + 1, *end = line + len;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
        *vlen = (size_t)(end - v);
        return v;
}

void http_etag_normalize(const char *v, size_t n, char *out, size_t outlen)
{
        if (n >= 2 && v[0] == 'W' && v[1] == '/') {
                v += 2;
                n -= 2;
        }
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                v++;
                n -= 2;
        }
        if (n > outlen - 1)
                n = outlen - 1;
        memcpy(out, v, n);
        out[n] = 0;
}

static uint64_t parse_digits(const char *v, size_t n, bool *ok)
{
        uint64_t x = 0;
        *ok = n > 0 && n <= 18;
        for (size_t i = 0; i < n && *ok; i++) {
                if (!isdigit((unsigned char)v[i]))
                        *ok = false;
                else
                        x = x * 10 + (uint64_t)(v[i] - '0');
        }
        return x;
}

/* "bytes START-END/TOTAL" (TOTAL may be "*"). */
static void content_range(struct http_head *h, const char *v, size_t n)
{
        char buf[96];
        if (n >= sizeof buf || n < 6 || strncmp(v, "bytes ", 6))
                return;
        memcpy(buf, v + 6, n - 6);
        buf[n - 6] = 0;
        unsigned long long start, end;
        char total[32];
        if (sscanf(buf, "%llu-%llu/%31s", &start, &end, total) != 3 || end < start)
                return;
        h->range_start = (int64_t)start;
        h->range_total = strcmp(total, "*") ? (int64_t)strtoull(total, NULL, 10) : -1;
}

void http_head_line(struct http_head *h, const char *line, size_t len)
{
        if (len > HTTP_LINE_MAX)
                h->too_long = true;
        if (len > 5 && !strncmp(line, "HTTP/", 5)) {
                const char *sp = memchr(line, ' ', len);
                bool too_long = h->too_long;
                http_head_init(h);
                h->too_long = too_long;
                h->status = sp ? strtol(sp + 1, NULL, 10) : 0;
                return;
        }
        size_t n;
        const char *v;
        bool ok;
        if ((v = http_header_value(line, len, "ETag", &n))) {
                http_etag_normalize(v, n, h->etag, sizeof h->etag);
                h->etag_weak = n >= 2 && v[0] == 'W' && v[1] == '/';
        } else if ((v = http_header_value(line, len, "Content-Range", &n))) {
                content_range(h, v, n);
        } else if ((v = http_header_value(line, len, "Retry-After", &n))) {
                uint64_t s = parse_digits(v, n, &ok);
                h->retry_after_s = ok ? (unsigned)(s < 3600 ? s : 3600) : 0;
        } else if ((v = http_header_value(line, len, "Content-Length", &n))) {
                uint64_t l = parse_digits(v, n, &ok);
                h->content_length = ok ? (int64_t)l : -1;
        }
}

/* scheme, host and port of url, lower-cased by libcurl's parser; 0 or -EINVAL. */
static int url_origin(const char *url, char **scheme, char **host, char **port)
{
        CURLU *u = curl_url();
        *scheme = *host = *port = NULL;
        int err = !u || curl_url_set(u, CURLUPART_URL, url, 0) ||
                  curl_url_get(u, CURLUPART_SCHEME, scheme, 0) ||
                  curl_url_get(u, CURLUPART_HOST, host, 0) ||
                  curl_url_get(u, CURLUPART_PORT, port, CURLU_DEFAULT_PORT);
        curl_url_cleanup(u);
        if (err) {
                curl_free(*scheme);
                curl_free(*host);
                curl_free(*port);
                *scheme = *host = *port = NULL;
                return -EINVAL;
        }
        return 0;
}

int http_redirect_check(const char *from, const char *to, bool *keep_credentials, const char **why)
{
        char *fs, *fh, *fp, *ts, *th, *tp;
        *keep_credentials = false;
        if (url_origin(from, &fs, &fh, &fp) < 0) {
                *why = "the original URL does not parse";
                return -EINVAL;
        }
        int ret = 0;
        if (url_origin(to, &ts, &th, &tp) < 0) {
                *why = "the redirect's Location does not parse as a URL";
                ret = -EPERM;
        } else if (strcmp(ts, "https") && strcmp(ts, "http")) {
                *why = "the redirect leaves http(s)";
                ret = -EPERM;
        } else if (!strcmp(fs, "https") && strcmp(ts, "https")) {
                *why = "the redirect leaves TLS (https to http)";
                ret = -EPERM;
        } else {
                *keep_credentials = !strcmp(fs, ts) && !strcasecmp(fh, th) && !strcmp(fp, tp);
        }
        curl_free(fs);
        curl_free(fh);
        curl_free(fp);
        curl_free(ts);
        curl_free(th);
        curl_free(tp);
        return ret;
}

const char *http_failure_cause(CURLcode rc)
{
        switch (rc) {
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
                return "reset";
        case CURLE_PARTIAL_FILE:
                return "short";
        case CURLE_OPERATION_TIMEDOUT:
                return "timeout";
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return "connect";
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
                return "tls";
        default:
                return "network";
        }
}
