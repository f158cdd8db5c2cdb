/* version.c - version, commit and library versions (see version.h). */
#include "version.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <libwebsockets.h>
#include <msgpack.h>
#include <openssl/crypto.h>
#include <string.h>
#include <uv.h>

#include "commit.h"

#ifndef TIPCAST_VERSION
#error "TIPCAST_VERSION comes from core/CMakeLists.txt"
#endif

const char *version_string(void) { return TIPCAST_VERSION; }

const char *version_commit(void) { return TIPCAST_COMMIT; }

void version_print(FILE *out, const char *prog)
{
    int pq = PQlibVersion(); /* 150010 for 15.10 */
    if (TIPCAST_COMMIT[0])
        fprintf(out, "%s %s (commit %s)\n", prog, TIPCAST_VERSION, TIPCAST_COMMIT);
    else
        fprintf(out, "%s %s\n", prog, TIPCAST_VERSION);
    /* Run-time versions where the library tells them, else those of the
     * headers built against (hiredis, jansson). */
    /* lws built without its git hash says "4.1.6-": the dash goes. */
    const char *lws = lws_get_library_version();
    size_t n = strlen(lws);
    if (n > 0 && lws[n - 1] == '-')
        n--;
    fprintf(out, "libwebsockets %.*s\n", (int)n, lws);
    fprintf(out, "hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    fprintf(out, "libpq %d.%d\n", pq / 10000, pq % 10000);
    fprintf(out, "libuv %s\n", uv_version_string());
    fprintf(out, "msgpack-c %s\n", msgpack_version());
    fprintf(out, "jansson %s\n", JANSSON_VERSION);
    fprintf(out, "%s\n", OpenSSL_version(OPENSSL_VERSION));
}
