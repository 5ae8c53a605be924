/* Credentials for the source: request headers from --header-file (read again whenever the
 * file changes, so an outside refresher can rotate tokens) and an OAuth2 access token
 * obtained and kept fresh from --oauth credentials (the JSON an installed-app flow
 * leaves: client_id, client_secret, refresh_token, token_uri). Tokens are never logged.
 * A thread of its own refreshes the token five minutes before it expires and after a 401;
 * everything here is thread-safe. Block the run's signals before auth_open (it starts
 * that thread). */
#ifndef QUIRE_AUTH_H
#define QUIRE_AUTH_H

#include <curl/curl.h>
#include <stddef.h>

struct auth;

/* Reads the files and, with --oauth, obtains the first access token (synchronously; a
 * pending SIGINT/SIGTERM/SIGHUP ends the request at once) and starts the refresher.
 * Returns 0, or -1 with a one-line reason in msg. */
int auth_open(struct auth **out, const char *header_file, const char *oauth_file,
              const char *ca_file, char *msg, size_t msglen);
void auth_close(struct auth *a);

/* A new header list for one request (the caller frees it with curl_slist_free_all once
 * the transfer is over); *gen receives the token generation it carries. NULL when there
 * are no headers. */
struct curl_slist *auth_headers(struct auth *a, unsigned *gen);

/* The source answered 401 to a request made with token generation gen: the refresher
 * gets a new token (once per generation). Returns 1 when a refresh can help (OAuth
 * configured), 0 otherwise. */
int auth_unauthorized(struct auth *a, unsigned gen);

#endif
