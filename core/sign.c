/* sign.c - signed HTTP bodies (see sign.h). */
#include "sign.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "hex.h"

#define SIGN_PREFIX "sha256="
#define SIGN_PREFIX_LEN 7
#define SIGN_MAC_BYTES 32
/* Longest timestamp a request may carry: 12 digits reach the year 33658,
 * and cannot overflow when read. */
#define SIGN_TS_MAX 12

/* HMAC-SHA256 over "<ts text>.<body>" into mac (OpenSSL 3's EVP_MAC, so
 * that the message is fed in parts without a copy). */
static int mac_of(const char *secret, size_t secret_len, const char *ts, size_t ts_len, const char *body, size_t len,
                  unsigned char mac[SIGN_MAC_BYTES])
{
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *h = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0), OSSL_PARAM_construct_end()};
    size_t n = 0;
    int ok = h && EVP_MAC_init(h, (const unsigned char *)secret, secret_len, params) &&
             EVP_MAC_update(h, (const unsigned char *)ts, ts_len) && EVP_MAC_update(h, (const unsigned char *)".", 1) &&
             EVP_MAC_update(h, (const unsigned char *)body, len) && EVP_MAC_final(h, mac, &n, SIGN_MAC_BYTES) &&
             n == SIGN_MAC_BYTES;
    EVP_MAC_CTX_free(h);
    EVP_MAC_free(m);
    return ok ? 0 : -1;
}

int sign_make(const char *secret, size_t secret_len, int64_t ts, const char *body, size_t len, char *out)
{
    char tstext[24];
    int tn = snprintf(tstext, sizeof tstext, "%lld", (long long)ts);
    unsigned char mac[SIGN_MAC_BYTES];
    if (mac_of(secret, secret_len, tstext, (size_t)tn, body, len, mac) < 0)
        return -1;
    memcpy(out, SIGN_PREFIX, SIGN_PREFIX_LEN);
    hex_lower(mac, sizeof mac, out + SIGN_PREFIX_LEN);
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

enum sign_result sign_check(const char *secret, size_t secret_len, const char *ts_header, const char *sig_header,
                            const char *body, size_t len, int64_t now_s)
{
    if (!ts_header || !sig_header || secret_len == 0)
        return SIGN_BAD;
    size_t ts_len = strlen(ts_header);
    if (ts_len == 0 || ts_len > SIGN_TS_MAX || strspn(ts_header, "0123456789") != ts_len)
        return SIGN_BAD;
    if (strlen(sig_header) != SIGN_PREFIX_LEN + 2 * SIGN_MAC_BYTES || memcmp(sig_header, SIGN_PREFIX, SIGN_PREFIX_LEN))
        return SIGN_BAD;
    unsigned char got[SIGN_MAC_BYTES], want[SIGN_MAC_BYTES];
    for (int i = 0; i < SIGN_MAC_BYTES; i++) {
        int hi = hexval(sig_header[SIGN_PREFIX_LEN + 2 * i]), lo = hexval(sig_header[SIGN_PREFIX_LEN + 2 * i + 1]);
        if (hi < 0 || lo < 0)
            return SIGN_BAD;
        got[i] = (unsigned char)(hi << 4 | lo);
    }
    /* The MAC is over the header's own text, so "0017" and "17" differ. */
    if (mac_of(secret, secret_len, ts_header, ts_len, body, len, want) < 0 ||
        CRYPTO_memcmp(got, want, SIGN_MAC_BYTES) != 0)
        return SIGN_BAD;
    long long ts = 0;
    for (size_t i = 0; i < ts_len; i++)
        ts = ts * 10 + (ts_header[i] - '0');
    long long d = (long long)now_s - ts;
    return d > SIGN_WINDOW_S || d < -SIGN_WINDOW_S ? SIGN_STALE : SIGN_OK;
}
