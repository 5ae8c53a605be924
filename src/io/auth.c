/* Source credentials: a header file watched for changes, and OAuth2 token refresh. */
#include "quire/io/auth.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "quire/base/util.h"

#define HEADER_FILE_MAX   (64 * 1024)
#define DEFAULT_TOKEN_URI "https://oauth2.googleapis.com/token"

struct auth {
        pthread_mutex_t lock;
        /* --header-file, as last read */
        const char *header_path;
        struct stat header_st;
        char *header_text; /* lines "Name: value\n" */
        /* --oauth */
        char *client_id, *client_secret, *refresh_token, *token_uri;
        const char *ca_file;
        char *access_token;
        time_t expires_at;
        unsigned gen;                  /* bumped by every new token */
        atomic_uint refresh_requested; /* generation that got a 401, plus one */
        time_t last_attempt;
};

/* ---- header file ------------------------------------------------------------------- */

static bool same_file_version(const struct stat *a, const struct stat *b)
{
        return a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Keeps "Name: value" lines; drops blanks, comments and malformed lines (named by number,
 * never by content: they may hold secrets). */
static char *parse_header_lines(const char *path, char *text)
{
        char *out = calloc(1, strlen(text) + 2), *o = out;
        if (!out)
                return NULL;
        unsigned lineno = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                lineno++;
                size_t n = strlen(line);
                while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
                        line[--n] = 0;
                if (!n || line[0] == '#')
                        continue;
                char *colon = strchr(line, ':');
                if (!colon || colon == line || strpbrk(line, " \t") < colon) {
                        qlog("%s:%u: not a 'Name: value' header line; ignored", path, lineno);
                        continue;
                }
                memcpy(o, line, n);
                o += n;
                *o++ = '\n';
        }
        return out;
}

/* Rereads the header file when it changed; call with the lock held. */
static void header_file_refresh(struct auth *a)
{
        struct stat st;
        if (!a->header_path || stat(a->header_path, &st) < 0 ||
            same_file_version(&st, &a->header_st))
                return;
        FILE *f = fopen(a->header_path, "re");
        if (!f) {
                qlog("--header-file %s: %s; keeping the previous headers", a->header_path,
                     strerror(errno));
                return;
        }
        char *text = calloc(1, HEADER_FILE_MAX + 1);
        size_t n = text ? fread(text, 1, HEADER_FILE_MAX, f) : 0;
        fclose(f);
        if (!text)
                return;
        text[n] = 0;
        char *parsed = parse_header_lines(a->header_path, text);
        explicit_bzero(text, n);
        free(text);
        if (!parsed)
                return;
        free_secret(a->header_text);
        a->header_text = parsed;
        a->header_st = st;
        if (st.st_mode & 077)
                qlog("warning: --header-file %s can be read by others (mode %03o)", a->header_path,
                     (unsigned)(st.st_mode & 0777));
}

/* ---- OAuth2 ------------------------------------------------------------------------ */

static char *json_str(json_t *obj, const char *key)
{
        const char *s = json_string_value(json_object_get(obj, key));
        return s ? strdup(s) : NULL;
}

static int oauth_load(struct auth *a, const char *path, char *msg, size_t msglen)
{
        json_error_t jerr;
        json_t *root = json_load_file(path, 0, &jerr);
        if (!root) {
                snprintf(msg, msglen, "--oauth %s: line %d: %s", path, jerr.line, jerr.text);
                return -1;
        }
        /* Google's client-secret files nest the client under "installed". */
        json_t *client = json_object_get(root, "installed");
        if (!json_is_object(client))
                client = root;
        a->client_id = json_str(client, "client_id");
        a->client_secret = json_str(client, "client_secret");
        a->token_uri = json_str(client, "token_uri");
        a->refresh_token = json_str(root, "refresh_token");
        if (!a->refresh_token)
                a->refresh_token = json_str(client, "refresh_token");
        json_decref(root);
        if (!a->token_uri)
                a->token_uri = strdup(DEFAULT_TOKEN_URI);
        const char *missing = !a->client_id       ? "client_id"
                              : !a->client_secret ? "client_secret"
                              : !a->refresh_token ? "refresh_token"
                                                  : NULL;
        if (missing) {
                snprintf(msg, msglen, "--oauth %s: no \"%s\"", path, missing);
                return -1;
        }
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077))
                qlog("warning: --oauth %s can be read by others (mode %03o); chmod 600 it", path,
                     (unsigned)(st.st_mode & 0777));
        return 0;
}

struct membuf {
        char data[16384];
        size_t len;
};

static size_t membuf_write(char *p, size_t size, size_t n, void *ud)
{
        struct membuf *m = ud;
        size_t len = size * n;
        if (m->len + len >= sizeof m->data)
                return 0;
        memcpy(m->data + m->len, p, len);
        m->len += len;
        m->data[m->len] = 0;
        return len;
}

static char *form_body(CURL *e, const struct auth *a)
{
        char *id = curl_easy_escape(e, a->client_id, 0);
        char *secret = curl_easy_escape(e, a->client_secret, 0);
        char *refresh = curl_easy_escape(e, a->refresh_token, 0);
        char *body = NULL;
        if (id && secret && refresh &&
            asprintf(&body,
                     "grant_type=refresh_token&client_id=%s&client_secret=%s&refresh_token=%s", id,
                     secret, refresh) < 0)
                body = NULL;
        curl_free(id);
        if (secret) {
                explicit_bzero(secret, strlen(secret));
                curl_free(secret);
        }
        if (refresh) {
                explicit_bzero(refresh, strlen(refresh));
                curl_free(refresh);
        }
        return body;
}

/* Exchanges the refresh token for an access token. The token endpoint's answer is
 * parsed, never printed: only its HTTP status and "error" field reach a message. */
static int oauth_refresh(struct auth *a, char *msg, size_t msglen)
{
        CURL *e = curl_easy_init();
        static struct membuf resp;
        resp.len = 0;
        resp.data[0] = 0;
        char *body = e ? form_body(e, a) : NULL;
        if (!body) {
                snprintf(msg, msglen, "--oauth: out of memory");
                curl_easy_cleanup(e);
                return -1;
        }
        curl_easy_setopt(e, CURLOPT_URL, a->token_uri);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, membuf_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &resp);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        if (a->ca_file) {
                curl_easy_setopt(e, CURLOPT_CAINFO, a->ca_file);
                curl_easy_setopt(e, CURLOPT_CAPATH, "/etc/ssl/certs");
        }
        CURLcode rc = curl_easy_perform(e);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(e);
        explicit_bzero(body, strlen(body));
        free(body);
        if (rc != CURLE_OK) {
                snprintf(msg, msglen, "--oauth: token endpoint %s: %s", a->token_uri,
                         curl_easy_strerror(rc));
                return -1;
        }
        json_t *root = json_loadb(resp.data, resp.len, 0, NULL);
        explicit_bzero(resp.data, resp.len);
        const char *token = json_string_value(json_object_get(root, "access_token"));
        if (status != 200 || !token) {
                const char *err = json_string_value(json_object_get(root, "error"));
                snprintf(msg, msglen, "--oauth: token endpoint %s answered HTTP %ld%s%s",
                         a->token_uri, status, err ? ": " : "", err ? err : "");
                json_decref(root);
                return -1;
        }
        json_int_t expires_in = json_integer_value(json_object_get(root, "expires_in"));
        pthread_mutex_lock(&a->lock);
        free_secret(a->access_token);
        a->access_token = strdup(token);
        a->expires_at = time(NULL) + (expires_in > 0 ? expires_in : 3600);
        a->gen++;
        pthread_mutex_unlock(&a->lock);
        json_decref(root);
        return 0;
}

/* ---- interface --------------------------------------------------------------------- */

int auth_open(struct auth **out, const char *header_file, const char *oauth_file,
              const char *ca_file, char *msg, size_t msglen)
{
        struct auth *a = calloc(1, sizeof *a);
        if (!a) {
                snprintf(msg, msglen, "out of memory");
                return -1;
        }
        pthread_mutex_init(&a->lock, NULL);
        a->ca_file = ca_file;
        a->header_path = header_file;
        *out = a;
        if (header_file) {
                header_file_refresh(a);
                if (!a->header_text) {
                        snprintf(msg, msglen, "--header-file %s: %s", header_file,
                                 errno ? strerror(errno) : "unreadable");
                        return -1;
                }
        }
        if (oauth_file &&
            (oauth_load(a, oauth_file, msg, msglen) < 0 || oauth_refresh(a, msg, msglen) < 0))
                return -1;
        return 0;
}

void auth_close(struct auth *a)
{
        if (!a)
                return;
        free_secret(a->header_text);
        free_secret(a->client_id);
        free_secret(a->client_secret);
        free_secret(a->refresh_token);
        free_secret(a->access_token);
        free(a->token_uri);
        pthread_mutex_destroy(&a->lock);
        free(a);
}

struct curl_slist *auth_headers(struct auth *a, unsigned *gen)
{
        struct curl_slist *list = NULL;
        pthread_mutex_lock(&a->lock);
        header_file_refresh(a);
        for (char *p = a->header_text; p && *p;) {
                char *nl = strchr(p, '\n');
                *nl = 0;
                list = curl_slist_append(list, p);
                *nl = '\n';
                p = nl + 1;
        }
        if (a->access_token) {
                char line[4096];
                snprintf(line, sizeof line, "Authorization: Bearer %s", a->access_token);
                list = curl_slist_append(list, line);
                explicit_bzero(line, sizeof line);
        }
        *gen = a->gen;
        pthread_mutex_unlock(&a->lock);
        return list;
}

int auth_unauthorized(struct auth *a, unsigned gen)
{
        if (!a->refresh_token)
                return 0;
        unsigned want = gen + 1, none = 0;
        atomic_compare_exchange_strong(&a->refresh_requested, &none, want);
        return 1;
}

void auth_tick(struct auth *a)
{
        if (!a || !a->refresh_token)
                return;
        time_t now = time(NULL);
        pthread_mutex_lock(&a->lock);
        unsigned gen = a->gen;
        bool expiring = now + 300 >= a->expires_at;
        pthread_mutex_unlock(&a->lock);
        unsigned asked = atomic_load(&a->refresh_requested);
        bool after_401 = asked && asked - 1 == gen;
        if (asked && !after_401)
                atomic_store(&a->refresh_requested, 0); /* a newer token already answers it */
        /* Retry a failing endpoint at most every 10 s. */
        if (!(expiring || after_401) || now - a->last_attempt < 10)
                return;
        a->last_attempt = now;
        char msg[512];
        if (oauth_refresh(a, msg, sizeof msg) < 0)
                qlog("%s; retrying", msg);
        else
                atomic_store(&a->refresh_requested, 0);
}
