/* hex.h - bytes as lower-case hex text: digests (request fingerprints, a
 * script's SHA1 for EVALSHA, signatures), written without printf, which
 * costs some 100 ns a byte where this costs a few. */
#ifndef TIPCAST_HEX_H
#define TIPCAST_HEX_H

#include <stddef.h>

/* Writes the 2 * n hex digits of d[0..n) and a NUL into out (2 * n + 1). */
void hex_lower(const unsigned char *d, size_t n, char *out);

#endif
