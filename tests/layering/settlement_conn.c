/* settlement_conn.c - settlement includes the connection layer (server), above it: must not build. */
#include "conn.h"
