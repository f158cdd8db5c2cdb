/* web.c - the web page's files held in memory, and demo tokens (see web.h). */
#include "web.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jwt.h"
#include "log.h"

/* Entries of web-root looked at, servable or not: bounds the directory scan
 * itself, whatever the directory holds. */
#define WEB_DIR_ENTRIES_MAX 1024

struct web_type {
    const char *ext; /* with the dot */
    const char *mime;
};

/* The extensions served and their Content-Type. The server sends
 * X-Content-Type-Options: nosniff, so browsers trust exactly these. */
static const struct web_type web_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
};

/* The demo users and their roles: the page lets a visitor pick one. */
static const struct {
    const char *user;
    enum role role;
} web_demo_users[] = {
    {"alice", ROLE_CREATOR},
    {"bob", ROLE_VIEWER},
    {"carol", ROLE_VIEWER},
    {"dave", ROLE_VIEWER},
    {"erin", ROLE_VIEWER},
};

/* The Content-Type for a servable file name, or NULL when the name is not
 * one we serve: 1..WEB_NAME_MAX bytes, a stem of [A-Za-z0-9_-] (so no dot
 * files, no "..", no '/'), and a known extension. */
static const char *web_name_type(const char *name)
{
    size_t len = strlen(name);
    const char *dot = strchr(name, '.');

    if (len == 0 || len > WEB_NAME_MAX || dot == NULL || dot == name)
        return NULL;
    for (const char *p = name; p < dot; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return NULL;
    }
    for (size_t i = 0; i < sizeof web_types / sizeof web_types[0]; i++)
        if (strcmp(dot, web_types[i].ext) == 0)
            return web_types[i].mime;
    return NULL;
}

/* Reads the regular file `name` in directory `dirfd` into `f`. Symbolic
 * links are not followed. Returns 0, 1 when it is not a regular file (to be
 * skipped), or -1 with the reason logged. */
static int web_read_file(int dirfd, const char *root, const char *name, const char *mime, struct web_file *f)
{
    struct stat st;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        if (errno == ELOOP)
            return 1;
        log_msg(LOG_ERROR, "web-root: cannot open %s/%s: %s", root, name, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        log_msg(LOG_ERROR, "web-root: cannot stat %s/%s: %s", root, name, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return 1;
    }
    if (st.st_size > WEB_FILE_BYTES_MAX) {
        log_msg(LOG_ERROR, "web-root: %s/%s is %lld bytes, more than the limit of %d", root, name,
                (long long)st.st_size, WEB_FILE_BYTES_MAX);
        close(fd);
        return -1;
    }
    size_t want = (size_t)st.st_size;
    /* One byte more than the size, so that a file that grew meanwhile is
     * noticed instead of served cut short. */
    unsigned char *data = malloc(want + 1);
    size_t have = 0;
    if (data == NULL) {
        log_msg(LOG_ERROR, "web-root: out of memory for %s/%s", root, name);
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, data + have, want + 1 - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_msg(LOG_ERROR, "web-root: cannot read %s/%s: %s", root, name, strerror(errno));
            free(data);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        if (have > want) {
            log_msg(LOG_ERROR, "web-root: %s/%s changed while it was read", root, name);
            free(data);
            close(fd);
            return -1;
        }
    }
    close(fd);
    memcpy(f->name, name, strlen(name) + 1);
    f->mime = mime;
    f->data = data;
    f->len = have;
    return 0;
}

/* Loads the servable files of directory `dir` (setting `what`) under the
 * name prefix `prefix` ("" or "sdk/"). Returns 0 or -1 with the reason
 * logged; files loaded before a failure stay counted for web_free. */
static int web_load_dir(struct web *w, const char *dir_path, const char *prefix, const char *what)
{
    DIR *dir = opendir(dir_path);
    if (dir == NULL) {
        log_msg(LOG_ERROR, "%s: cannot open the directory %s: %s", what, dir_path, strerror(errno));
        return -1;
    }
    int rc = 0, seen = 0, before = w->count;
    struct dirent *de;
    errno = 0;
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        if (++seen > WEB_DIR_ENTRIES_MAX) {
            log_msg(LOG_ERROR, "%s: %s has more than %d entries; is it the right directory?", what, dir_path,
                    WEB_DIR_ENTRIES_MAX);
            rc = -1;
            break;
        }
        const char *mime = web_name_type(de->d_name);
        if (mime == NULL)
            continue;
        if (w->count == WEB_FILES_MAX) {
            log_msg(LOG_ERROR, "%s: more than %d servable files", what, WEB_FILES_MAX);
            rc = -1;
            break;
        }
        int r = web_read_file(dirfd(dir), dir_path, de->d_name, mime, &w->files[w->count]);
        if (r < 0) {
            rc = -1;
        } else if (r == 0) {
            struct web_file *f = &w->files[w->count++];
            char name[sizeof f->name];
            snprintf(name, sizeof name, "%s%s", prefix, f->name);
            memcpy(f->name, name, sizeof name);
        }
        errno = 0;
    }
    if (rc == 0 && errno != 0) {
        log_msg(LOG_ERROR, "%s: cannot list %s: %s", what, dir_path, strerror(errno));
        rc = -1;
    }
    closedir(dir);
    if (rc == 0)
        log_msg(LOG_INFO, "%s: serving %d files from %s", what, w->count - before, dir_path);
    return rc;
}

int web_load(struct web *w, const char *root, const char *sdk_root)
{
    web_free(w);
    if (root == NULL || root[0] == '\0')
        return 0;
    int rc = web_load_dir(w, root, "", "web-root");
    if (rc == 0 && web_find(w, "/") == NULL) {
        log_msg(LOG_ERROR, "web-root: %s has no index.html", root);
        rc = -1;
    }
    if (rc == 0 && sdk_root != NULL && sdk_root[0] != '\0')
        rc = web_load_dir(w, sdk_root, WEB_SDK_PREFIX, "web-sdk-root");
    if (rc != 0) {
        web_free(w);
        return -1;
    }
    return 0;
}

const struct web_file *web_find(const struct web *w, const char *path)
{
    if (path == NULL || path[0] != '/')
        return NULL;
    const char *name = path[1] == '\0' ? "index.html" : path + 1;
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->files[i].name, name) == 0)
            return &w->files[i];
    return NULL;
}

void web_free(struct web *w)
{
    for (int i = 0; i < w->count; i++) {
        free(w->files[i].data);
        memset(&w->files[i], 0, sizeof w->files[i]);
    }
    w->count = 0;
}

int web_demo_token(const struct config *cfg, const char *user, int overlay, long long now_s, char *body, size_t cap)
{
    char token[JWT_MAX_BYTES + 1];
    const struct config_secret *key = NULL;
    int role = -1;

    if (user == NULL)
        return 0;
    for (size_t i = 0; i < sizeof web_demo_users / sizeof web_demo_users[0]; i++)
        if (strcmp(user, web_demo_users[i].user) == 0)
            role = (int)web_demo_users[i].role;
    if (role < 0 || (overlay && role != ROLE_CREATOR))
        return 0;
    if (overlay)
        role = ROLE_OVERLAY;
    key = config_sign_secret(cfg);
    if (key == NULL)
        return -1;
    int n = jwt_sign(key->key, (size_t)key->key_len, key->kid[0] ? key->kid : NULL, user, (enum role)role,
                     now_s + WEB_DEMO_TOKEN_TTL_S, token, sizeof token);
    if (n < 0)
        return -1;
    /* A token is base64url and dots, a demo user id is [a-z]: nothing here
     * needs JSON escaping. */
    int len = snprintf(body, cap, "{\"token\":\"%s\",\"user\":\"%s\",\"role\":\"%s\"%s%s%s}\n", token, user,
                       role_name((enum role)role), overlay ? ",\"room\":\"" : "", overlay ? user : "",
                       overlay ? "\"" : "");
    if (len < 0 || (size_t)len >= cap)
        return -1;
    return len;
}
