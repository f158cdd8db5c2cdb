/* hash.h - the two hashes that place data: FNV-1a, which puts a user on a
 * wallet shard and a room in a node's table, and the Redis Cluster key
 * slot, which says where a key lives when Redis is a cluster.
 *
 * Every key a Lua script touches must be on one slot (design.md): the keys
 * of a wallet shard carry the hash tag {w:N}, a room's the tag {r:ROOM}.
 * hash_keyslot lets the tests check that, and routes commands in cluster
 * mode (core/rcluster.c). Both are pure functions. */
#ifndef TIPCAST_HASH_H
#define TIPCAST_HASH_H

#include <stddef.h>
#include <stdint.h>

/* Slots of a Redis Cluster. */
#define HASH_SLOTS 16384

/* 32-bit FNV-1a of s[0..len). */
uint32_t hash_fnv1a(const char *s, size_t len);

/* CRC16 (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster uses it. */
uint16_t hash_crc16(const char *s, size_t len);

/* The cluster slot of a key: CRC16 of its hash tag (the bytes between the
 * first '{' and the next '}', when that is not empty) or of the whole key,
 * modulo HASH_SLOTS. */
int hash_keyslot(const char *key, size_t len);

#endif
