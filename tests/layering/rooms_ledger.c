/* rooms_ledger.c - rooms includes storage, which it does not link: must not build. */
#include "ledger.h"
