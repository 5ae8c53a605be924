/* Source credentials: a header file watched for changes, and OAuth2 token refresh on a
 * thread of its own, so that no request to the token endpoint ever holds up the main
 * thread's signals or a worker's loop. */
#include "quire/io/auth.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "quire/base/util.h"
#include "quire/io/http.h"

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
        unsigned gen;            /* bumped by every new token */
        unsigned refresh_wanted; /* generation that got a 401, plus one; 0: none */
        /* the refresher thread */
        pthread_t thread;
        bool thread_started, stopping;
        pthread_cond_t wake;
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
                /* "Name: value" and "Name:value" both; no blank inside the name. */
                char *colon = strchr(line, ':'), *blank = strpbrk(line, " \t");
                if (!colon || colon == line || (blank && blank < colon)) {
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
        util_free_secret(a->header_text);
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

/* A pending SIGINT, SIGTERM or SIGHUP (blocked in every thread, read by the run's
 * signalfd) ends a request to the token endpoint at once. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
        sigset_t pending;
        if (sigpending(&pending) < 0)
                return 0;
        return sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM) ||
               sigismember(&pending, SIGHUP);
}

/* Exchanges the refresh token for an access token. The token endpoint's answer is
 * parsed, never printed: only its HTTP status and "error" field reach a message. */
static int oauth_refresh(struct auth *a, char *msg, size_t msglen)
{
        CURL *e = curl_easy_init();
        struct membuf *resp = calloc(1, sizeof *resp);
        char *body = e ? form_body(e, a) : NULL;
        if (!body || !resp) {
                snprintf(msg, msglen, "--oauth: out of memory");
                curl_easy_cleanup(e);
                free(body);
                free(resp);
                return -1;
        }
        struct http_baseline base = {.ca_file = a->ca_file, .connect_timeout_s = 10};
        http_easy_reset(e, &base);
        curl_easy_setopt(e, CURLOPT_URL, a->token_uri);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, membuf_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
        curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
        CURLcode rc = curl_easy_perform(e);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(e);
        explicit_bzero(body, strlen(body));
        free(body);
        if (rc != CURLE_OK) {
                snprintf(msg, msglen, "--oauth: token endpoint %s: %s", a->token_uri,
                         rc == CURLE_ABORTED_BY_CALLBACK ? "interrupted" : curl_easy_strerror(rc));
                free(resp);
                return rc == CURLE_ABORTED_BY_CALLBACK ? -EINTR : -1;
        }
        json_t *root = json_loadb(resp->data, resp->len, 0, NULL);
        explicit_bzero(resp->data, resp->len);
        free(resp);
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
        util_free_secret(a->access_token);
        a->access_token = strdup(token);
        a->expires_at = time(NULL) + (expires_in > 0 ? expires_in : 3600);
        a->gen++;
        pthread_mutex_unlock(&a->lock);
        json_decref(root);
        return 0;
}

/* ---- the refresher thread ---------------------------------------------------------- */

/* Refreshes five minutes before the token expires, and once per token after a 401;
 * a failing endpoint is retried every 10 s. */
static void *refresher_main(void *arg)
{
        struct auth *a = arg;
        time_t retry_at = 0;
        pthread_mutex_lock(&a->lock);
        while (!a->stopping) {
                time_t now = time(NULL);
                bool after_401 = a->refresh_wanted == a->gen + 1;
                time_t due = after_401 ? now : a->expires_at - 300;
                if (due < retry_at)
                        due = retry_at;
                if (due > now) {
                        struct timespec ts = {.tv_sec = due};
                        pthread_cond_timedwait(&a->wake, &a->lock, &ts);
                        continue;
                }
                pthread_mutex_unlock(&a->lock);
                char msg[512];
                int err = oauth_refresh(a, msg, sizeof msg);
                pthread_mutex_lock(&a->lock);
                if (err < 0 && !a->stopping) {
                        qlog("%s; retrying in 10 s", msg);
                        retry_at = time(NULL) + 10;
                } else {
                        retry_at = 0;
                }
        }
        pthread_mutex_unlock(&a->lock);
        return NULL;
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
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_REALTIME);
        pthread_cond_init(&a->wake, &ca);
        pthread_condattr_destroy(&ca);
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
        if (!oauth_file)
                return 0;
        if (oauth_load(a, oauth_file, msg, msglen) < 0 || oauth_refresh(a, msg, msglen) < 0)
                return -1;
        int err = pthread_create(&a->thread, NULL, refresher_main, a);
        if (err) {
                snprintf(msg, msglen, "--oauth: cannot start the token refresher: %s",
                         strerror(err));
                return -1;
        }
        a->thread_started = true;
        return 0;
}

void auth_close(struct auth *a)
{
        if (!a)
                return;
        if (a->thread_started) {
                pthread_mutex_lock(&a->lock);
                a->stopping = true;
                pthread_cond_signal(&a->wake);
                pthread_mutex_unlock(&a->lock);
                pthread_join(a->thread, NULL);
        }
        util_free_secret(a->header_text);
        util_free_secret(a->client_id);
        util_free_secret(a->client_secret);
        util_free_secret(a->refresh_token);
        util_free_secret(a->access_token);
        free(a->token_uri);
        pthread_cond_destroy(&a->wake);
        pthread_mutex_destroy(&a->lock);
        free(a);
}

struct curl_slist *auth_headers(struct auth *a, unsigned *gen)
{
        struct curl_slist *list = NULL;
        bool oom = false;
        pthread_mutex_lock(&a->lock);
        header_file_refresh(a);
        for (char *p = a->header_text; p && *p;) {
                char *nl = strchr(p, '\n');
                *nl = 0;
                struct curl_slist *l = curl_slist_append(list, p);
                *nl = '\n';
                oom |= !l;
                list = l ? l : list;
                p = nl + 1;
        }
        if (a->access_token) {
                char line[4096];
                snprintf(line, sizeof line, "Authorization: Bearer %s", a->access_token);
                struct curl_slist *l = curl_slist_append(list, line);
                explicit_bzero(line, sizeof line);
                oom |= !l;
                list = l ? l : list;
        }
        *gen = a->gen;
        pthread_mutex_unlock(&a->lock);
        if (oom) {
                curl_slist_free_all(list);
                return NULL;
        }
        return list;
}

int auth_unauthorized(struct auth *a, unsigned gen)
{
        if (!a->refresh_token)
                return 0;
        pthread_mutex_lock(&a->lock);
        if (a->gen == gen && a->refresh_wanted != gen + 1) {
                a->refresh_wanted = gen + 1;
                pthread_cond_signal(&a->wake);
        }
        pthread_mutex_unlock(&a->lock);
        return 1;
}
