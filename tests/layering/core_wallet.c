/* core_wallet.c - core includes a money header: must not build (core knows nothing of gifts). */
#include "wallet.h"
