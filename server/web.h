/* web.h - the static files of the pages tipcastd serves (setting web-root:
 * the demo page, the creator dashboard and the OBS overlays, clients/web/),
 * the JavaScript SDK they import (setting web-sdk-root, clients/js/src/,
 * served under /sdk/), and the demo token endpoint (setting demo).
 *
 * The files are read once, at start, into memory: serving them then costs no
 * disk I/O on the loop, and only files that were found at start can ever be
 * answered, so a request path can never reach outside web-root (no "..", no
 * symlinked directories, no directory listing). Only regular files directly
 * in web-root (or web-sdk-root) whose names are [A-Za-z0-9_-] plus a known
 * extension are served; changing a file needs a restart.
 */
#ifndef TIPCAST_WEB_H
#define TIPCAST_WEB_H

#include <stddef.h>

#include "config.h"

/* Files loaded from web-root; more is a start-up error, so that a mistaken
 * web-root (say, /) fails loudly instead of being half served. */
#define WEB_FILES_MAX 64
/* Largest file loaded; a larger one is a start-up error. */
#define WEB_FILE_BYTES_MAX (1024 * 1024)
/* Longest file name (without the leading '/' and the SDK's prefix). */
#define WEB_NAME_MAX 64
/* Where the files of web-sdk-root are served: /sdk/tipcast.js. */
#define WEB_SDK_PREFIX "sdk/"
/* Lifetime of a token from GET /demo/token. */
#define WEB_DEMO_TOKEN_TTL_S (12 * 3600)

struct web_file {
    char name[WEB_NAME_MAX + sizeof WEB_SDK_PREFIX]; /* "index.html", "sdk/tipcast.js" */
    const char *mime;            /* Content-Type, static string */
    unsigned char *data;         /* owned by the web module */
    size_t len;
};

/* The files loaded. */
struct web {
    struct web_file files[WEB_FILES_MAX];
    int count;
};

/* Loads every servable file of `root` (a directory), and of `sdk_root`
 * (NULL or "" for none) under WEB_SDK_PREFIX. An empty root loads nothing
 * and succeeds (sdk_root is then not read). Returns 0, or -1 with the reason
 * logged (not a directory, no index.html in root, more than WEB_FILES_MAX
 * files in all, too large files, a read error); on failure nothing stays
 * loaded. Blocks on the disk: call before the loop runs. */
int web_load(struct web *w, const char *root, const char *sdk_root);

/* The file for a request path ("/" means "/index.html"), or NULL when no such
 * file was loaded. The file stays valid until web_free. */
const struct web_file *web_find(const struct web *w, const char *path);

/* Frees every loaded file; web_find answers NULL afterwards. */
void web_free(struct web *w);

/* Writes the JSON answer of GET /demo/token?user=USER into `body`:
 * {"token":"<JWT>","user":"bob","role":"viewer"}, the token signed with the
 * default secret of `cfg` (the entry without kid, else the first one) and
 * valid for WEB_DEMO_TOKEN_TTL_S. Only the demo users have tokens: viewers
 * bob, carol, dave, erin and the creator alice. Returns the body length, 0
 * when `user` is not a demo user (or is NULL), -1 when signing failed or
 * `cap` is too small. With `overlay` (?role=overlay), the token is the
 * demo creator's overlay token, {"token",...,"role":"overlay","room":"alice"},
 * and 0 is answered for any other user. The caller checks that the demo
 * setting is on. */
int web_demo_token(const struct config *cfg, const char *user, int overlay, long long now_s, char *body, size_t cap);

#endif
