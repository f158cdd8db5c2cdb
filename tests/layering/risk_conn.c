/* risk_conn.c - risk includes the connection layer (server), above it: must not build. */
#include "conn.h"
