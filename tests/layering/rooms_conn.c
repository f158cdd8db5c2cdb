/* rooms_conn.c - a domain module includes the connection layer: must not build (it answers through reply handles). */
#include "conn.h"
