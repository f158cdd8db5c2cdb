/* gifts_roomstore.c - gifts includes rooms, a layer above it: must not build. */
#include "roomstore.h"
