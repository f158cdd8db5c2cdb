/* storage_webhook.c - storage includes settlement, which links it: must not build. */
#include "webhook.h"
