/* storage_roomfeed.c - storage includes rooms, which it does not link: must not build. */
#include "roomfeed.h"
