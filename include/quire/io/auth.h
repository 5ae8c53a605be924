/* Credentials for the source: request headers from --header-file (read again whenever the
 * file changes, so an outside refresher can rotate tokens) and an OAuth2 access token
 * obtained and kept fresh from --oauth credentials (the JSON an installed-app flow
 * leaves: client_id, client_secret, refresh_token, token_uri). Tokens are never logged.
 * Workers call auth_headers() (thread-safe); the main thread calls auth_tick(). */
#ifndef QUIRE_AUTH_H
#define QUIRE_AUTH_H

#include <curl/curl.h>
#include <stddef.h>

struct auth;

/* Reads the files and, with --oauth, obtains the first access token (synchronously).
 * Returns 0, or -1 with a one-line reason in msg. */
int auth_open(struct auth **out, const char *header_file, const char *oauth_file,
              const char *ca_file, char *msg, size_t msglen);
void auth_close(struct auth *a);

/* A new header list for one request (the caller frees it with curl_slist_free_all once
 * the transfer is over); *gen receives the token generation it carries. NULL when there
 * are no headers. */
struct curl_slist *auth_headers(struct auth *a, unsigned *gen);

/* The source answered 401 to a request made with token generation gen: the main thread
 * refreshes the token (once per generation). Returns 1 when a refresh can help (OAuth
 * configured), 0 otherwise. */
int auth_unauthorized(struct auth *a, unsigned gen);

/* Main thread, about once a second: refreshes the token before it expires or after a
 * 401. Never blocks longer than the token endpoint's timeout. */
void auth_tick(struct auth *a);

#endif
