/* storage_settlement.c - storage includes settlement, which sits above it: must not build. */
#include "routes.h"
