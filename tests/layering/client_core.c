/* client_core.c - libtipcast includes a header of tipcastd's core: must not
 * build (the client library is for third parties and links no server code). */
#include "enc.h"
