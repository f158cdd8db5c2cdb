/* settlement_conn.c - settlement includes server, which links it: must not build. */
#include "conn.h"
