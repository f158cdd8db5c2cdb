/* coins.h - the bound on any amount of coins: a price, a tip, a credit, a
 * gift's total. Amounts are int64 coins; the wallet scripts compute in Lua
 * numbers (doubles), exact below 2^53, so every amount that reaches them is
 * kept far below that. */
#ifndef TIPCAST_COINS_H
#define TIPCAST_COINS_H

#define COINS_MAX 1000000000000LL

#endif
