/* cli_out.c - what every command of `tipcast` writes the same way: JSON
 * strings and failures (cli.h). Both cli.c and cli_admin.c use it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

char *cli_json_str(const char *s)
{
    size_t n = strlen(s), cap = n * 6 + 3, k = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    out[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[k++] = '\\';
            out[k++] = (char)ch;
        } else if (ch < 0x20) {
            k += (size_t)snprintf(out + k, cap - k, "\\u%04x", ch);
        } else {
            out[k++] = (char)ch;
        }
    }
    out[k++] = '"';
    out[k] = '\0';
    return out;
}

/* A failure: "tipcast: CODE: message" on stderr, and with --json the same as
 * an object on stdout (a script reads one object whatever happened). */
void cli_err(struct cli *o, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "tipcast: %s: %s\n", code, msg);
    if (o && o->json) {
        char *c = cli_json_str(code), *m = cli_json_str(msg);
        printf("{\"type\":\"error\",\"code\":%s,\"message\":%s}\n", c ? c : "\"\"", m ? m : "\"\"");
        free(c);
        free(m);
    }
}
