/* jwt.c - HS256 JSON Web Tokens: verification for tipcastd, minting for tests
 * and the tipcast-token tool.
 *
 * Verification order matters: the token's shape and header are checked
 * first (they select the key), then the signature, and only then is the
 * payload parsed and its claims believed.
 */
#include "jwt.h"

#include <string.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* HMAC-SHA256 output size. */
#define JWT_SIG_BYTES 32
/* Longest kid; it must fit struct config_secret's kid with its NUL. */
#define JWT_KID_MAX ((int)sizeof(((struct config_secret *)0)->kid) - 1)

/* Encodes in[0..len) as unpadded base64url into out (room for cap bytes,
 * including a NUL). Returns the encoded length, or -1 when cap is too small.
 * lws pads its base64url with '=', which a JWT never has. */
static long jwt_b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
    char padded[JWT_MAX_BYTES / 3 * 4 + 8];
    if (len > JWT_MAX_BYTES)
        return -1;
    int n = lws_b64_encode_string_url((const char *)in, (int)len, padded, (int)sizeof padded);
    if (n < 0)
        return -1;
    while (n > 0 && padded[n - 1] == '=')
        n--;
    if ((size_t)n + 1 > cap)
        return -1;
    memcpy(out, padded, (size_t)n);
    out[n] = '\0';
    return n;
}

/* Decodes unpadded base64url in[0..len) into out (room for cap bytes).
 * Returns the decoded length, or -1 unless `in` is exactly what encoding
 * the result gives back: that refuses every character outside the
 * base64url alphabet (lws's decoder would take '+', '/', '=' and skip
 * others), every length no encoding produces, and non-zero leftover bits,
 * so each byte string has exactly one accepted spelling. */
static long jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    char bytes[JWT_MAX_BYTES / 4 * 3 + 8], again[JWT_MAX_BYTES + 8];
    size_t need = len / 4 * 3 + (len % 4 == 2 ? 1 : len % 4 == 3 ? 2 : 0);
    if (len > JWT_MAX_BYTES || len % 4 == 1 || need > cap)
        return -1;
    /* lws stops short of a buffer's last few bytes: it gets room to spare. */
    int n = lws_b64_decode_string_len(in, (int)len, bytes, (int)sizeof bytes);
    if (n < 0 || (size_t)n != need)
        return -1;
    long m = jwt_b64url_encode((const unsigned char *)bytes, (size_t)n, again, sizeof again);
    if (m < 0 || (size_t)m != len || memcmp(again, in, len) != 0)
        return -1;
    memcpy(out, bytes, (size_t)n);
    return n;
}

/* HMAC-SHA256 of msg under key into mac. Returns 0, or -1 when OpenSSL fails. */
static int jwt_hmac(const void *key, size_t key_len, const char *msg, size_t msg_len,
                    unsigned char mac[JWT_SIG_BYTES])
{
    unsigned int mac_len = 0;
    /* HMAC() takes a non-NULL key even when it is empty. */
    static const unsigned char empty = 0;

    if (HMAC(EVP_sha256(), key_len ? key : &empty, (int)key_len, (const unsigned char *)msg,
             msg_len, mac, &mac_len) == NULL ||
        mac_len != JWT_SIG_BYTES)
        return -1;
    return 0;
}

/* Picks the secret for a token: by kid when the header has one, else the
 * entry without a kid, else the first entry. Returns NULL when none fits. */
static const struct config_secret *jwt_pick_secret(const struct config *cfg, const char *kid,
                                                   size_t kid_len)
{
    int count = cfg->secrets_count;

    if (count < 0 || count > CONFIG_SECRETS_MAX)
        return NULL;
    for (int i = 0; i < count; i++) {
        const struct config_secret *s = &cfg->secrets[i];
        if (kid == NULL && s->kid[0] == '\0')
            return s;
        if (kid != NULL && s->kid[0] != '\0' && strlen(s->kid) == kid_len &&
            memcmp(s->kid, kid, kid_len) == 0)
            return s;
    }
    if (kid == NULL && count > 0)
        return &cfg->secrets[0];
    return NULL;
}

/* Reads the header and picks the key. Returns JWT_OK with *secret set,
 * JWT_MALFORMED or JWT_UNKNOWN_KID. */
static enum jwt_result jwt_check_header(const struct config *cfg, const unsigned char *buf,
                                        size_t len, const struct config_secret **secret)
{
    json_t *hdr = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *alg, *kid;
    enum jwt_result r = JWT_MALFORMED;

    if (hdr == NULL || !json_is_object(hdr))
        goto out;
    /* Only HS256 is accepted: "none" and every other algorithm, including
     * stronger HMACs, would let the token choose how it is checked. */
    alg = json_object_get(hdr, "alg");
    if (!json_is_string(alg) || json_string_length(alg) != 5 ||
        memcmp(json_string_value(alg), "HS256", 5) != 0)
        goto out;
    /* RFC 7515 4.1.11: an extension we do not understand must not be ignored. */
    if (json_object_get(hdr, "crit") != NULL)
        goto out;
    kid = json_object_get(hdr, "kid");
    if (kid != NULL && !json_is_string(kid))
        goto out;
    r = JWT_UNKNOWN_KID;
    if (kid != NULL)
        *secret = jwt_pick_secret(cfg, json_string_value(kid), json_string_length(kid));
    else
        *secret = jwt_pick_secret(cfg, NULL, 0);
    if (*secret != NULL)
        r = JWT_OK;
out:
    json_decref(hdr);
    return r;
}

/* now_s > exp + leeway, written so that no operand can overflow. */
static int jwt_expired(int64_t now_s, int64_t exp)
{
    if (exp > INT64_MAX - JWT_LEEWAY_S)
        return 0;
    return now_s > exp + JWT_LEEWAY_S;
}

/* now_s + leeway < nbf, written so that no operand can overflow. */
static int jwt_not_yet(int64_t now_s, int64_t nbf)
{
    if (nbf < INT64_MIN + JWT_LEEWAY_S)
        return 0;
    return now_s < nbf - JWT_LEEWAY_S;
}

int role_parse(const char *s, size_t len)
{
    for (int r = 0; r < ROLE_COUNT; r++) {
        const char *name = role_name((enum role)r);
        if (strlen(name) == len && memcmp(name, s, len) == 0)
            return r;
    }
    return -1;
}

/* A device id: 1..JWT_DEV_MAX bytes of [A-Za-z0-9_.:-] (it is written into
 * outbox entries and orders as it is). */
static int dev_valid(const json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > JWT_DEV_MAX)
        return 0;
    const char *s = json_string_value(v);
    for (size_t i = 0; i < json_string_length(v); i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '.' || s[i] == ':' || s[i] == '-'))
            return 0;
    return 1;
}

/* Reads the claims of a payload whose signature has been checked. */
static enum jwt_result jwt_check_claims(const unsigned char *buf, size_t len, int64_t now_s,
                                        struct jwt_claims *claims)
{
    json_t *payload = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *sub, *role, *exp, *nbf, *dev, *room;
    enum jwt_result r = JWT_MALFORMED;

    if (payload == NULL || !json_is_object(payload))
        goto out;
    r = JWT_BAD_CLAIMS;
    sub = json_object_get(payload, "sub");
    if (!json_is_string(sub) || !id_valid(json_string_value(sub), json_string_length(sub)))
        goto out;
    role = json_object_get(payload, "role");
    int r_role = json_is_string(role) ? role_parse(json_string_value(role), json_string_length(role)) : -1;
    if (r_role < 0)
        goto out;
    claims->role = (enum role)r_role;
    /* An overlay's scope is its subject; "room" says so in the token. */
    room = json_object_get(payload, "room");
    if (r_role == ROLE_OVERLAY && !(json_is_string(room) && json_equal(room, sub)))
        goto out;
    /* json_is_integer is false for reals such as 1.7e9: an expiry is a whole
     * number of seconds, and a float form is a sign of a sloppy issuer. */
    exp = json_object_get(payload, "exp");
    if (!json_is_integer(exp))
        goto out;
    nbf = json_object_get(payload, "nbf");
    if (nbf != NULL && !json_is_integer(nbf))
        goto out;
    dev = json_object_get(payload, "dev");
    if (dev != NULL && !dev_valid(dev))
        goto out;
    if (dev != NULL) {
        static _Thread_local char dev_buf[JWT_DEV_MAX + 1];
        memcpy(dev_buf, json_string_value(dev), json_string_length(dev) + 1);
        claims->dev = dev_buf;
    }
    claims->exp = (int64_t)json_integer_value(exp);
    memcpy(claims->sub, json_string_value(sub), json_string_length(sub));
    claims->sub[json_string_length(sub)] = '\0';
    r = JWT_EXPIRED;
    if (jwt_expired(now_s, claims->exp))
        goto out;
    r = JWT_NOT_YET_VALID;
    if (nbf != NULL && jwt_not_yet(now_s, (int64_t)json_integer_value(nbf)))
        goto out;
    r = JWT_OK;
out:
    json_decref(payload);
    return r;
}

enum jwt_result jwt_verify(const struct config *cfg, const char *token, size_t len,
                           int64_t now_s, struct jwt_claims *out)
{
    /* Decoded parts are shorter than the token, which is at most JWT_MAX_BYTES. */
    unsigned char header[JWT_MAX_BYTES];
    unsigned char payload[JWT_MAX_BYTES];
    unsigned char sig[JWT_MAX_BYTES];
    unsigned char mac[JWT_SIG_BYTES];
    const struct config_secret *secret = NULL;
    struct jwt_claims claims;
    const char *dot1, *dot2;
    size_t h_len, p_len, s_len;
    long header_n, payload_n, sig_n;
    enum jwt_result r;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (cfg == NULL || token == NULL || out == NULL || len == 0 || len > JWT_MAX_BYTES)
        return JWT_MALFORMED;

    dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        return JWT_MALFORMED;
    dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return JWT_MALFORMED;
    h_len = (size_t)(dot1 - token);
    p_len = (size_t)(dot2 - dot1 - 1);
    s_len = len - (size_t)(dot2 + 1 - token);
    if (h_len == 0 || p_len == 0 || s_len == 0)
        return JWT_MALFORMED;

    /* Every part must be valid base64url before anything is believed, so a
     * garbled token is malformed whatever its signature. */
    header_n = jwt_b64url_decode(token, h_len, header, sizeof(header));
    payload_n = jwt_b64url_decode(dot1 + 1, p_len, payload, sizeof(payload));
    sig_n = jwt_b64url_decode(dot2 + 1, s_len, sig, sizeof(sig));
    if (header_n <= 0 || payload_n <= 0 || sig_n <= 0)
        return JWT_MALFORMED;

    r = jwt_check_header(cfg, header, (size_t)header_n, &secret);
    if (r != JWT_OK)
        return r;
    if (secret->key_len < 0 || secret->key_len > CONFIG_STR_MAX)
        return JWT_UNKNOWN_KID;
    if (jwt_hmac(secret->key, (size_t)secret->key_len, token, (size_t)(dot2 - token), mac) != 0)
        return JWT_BAD_SIGNATURE;
    if (sig_n != JWT_SIG_BYTES || CRYPTO_memcmp(mac, sig, JWT_SIG_BYTES) != 0)
        return JWT_BAD_SIGNATURE;

    memset(&claims, 0, sizeof(claims));
    r = jwt_check_claims(payload, (size_t)payload_n, now_s, &claims);
    if (r != JWT_OK)
        return r;
    *out = claims;
    return JWT_OK;
}

/* Dumps a JSON object compactly, base64url-encoded, into out. Returns the
 * encoded length or -1. */
static long jwt_encode_json(json_t *obj, char *out, size_t cap)
{
    char json[512];
    size_t n = json_dumpb(obj, json, sizeof(json), JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (n == 0 || n > sizeof(json))
        return -1;
    return jwt_b64url_encode((const unsigned char *)json, n, out, cap);
}

int jwt_sign(const char *key, size_t key_len, const char *kid, const char *sub,
             enum role role, int64_t exp, char *out, size_t outlen)
{
    unsigned char mac[JWT_SIG_BYTES];
    json_t *hdr = NULL, *payload = NULL;
    long n, m, s;
    int rc = -1;

    if ((key == NULL && key_len > 0) || sub == NULL || out == NULL || outlen == 0)
        return -1;
    if (!id_valid(sub, strlen(sub)))
        return -1;
    if ((int)role < 0 || (int)role >= ROLE_COUNT)
        return -1;
    if (kid != NULL && (kid[0] == '\0' || strlen(kid) > (size_t)JWT_KID_MAX))
        return -1;

    hdr = json_object();
    payload = json_object();
    if (hdr == NULL || payload == NULL ||
        json_object_set_new(hdr, "alg", json_string("HS256")) != 0 ||
        json_object_set_new(hdr, "typ", json_string("JWT")) != 0 ||
        (kid != NULL && json_object_set_new(hdr, "kid", json_string(kid)) != 0) ||
        json_object_set_new(payload, "sub", json_string(sub)) != 0 ||
        json_object_set_new(payload, "role", json_string(role_name(role))) != 0 ||
        json_object_set_new(payload, "exp", json_integer((json_int_t)exp)) != 0 ||
        (role == ROLE_OVERLAY && json_object_set_new(payload, "room", json_string(sub)) != 0))
        goto out;

    n = jwt_encode_json(hdr, out, outlen);
    if (n < 0 || (size_t)n + 1 >= outlen)
        goto out;
    out[n++] = '.';
    m = jwt_encode_json(payload, out + n, outlen - (size_t)n);
    if (m < 0)
        goto out;
    n += m;
    if ((size_t)n + 1 >= outlen || jwt_hmac(key, key_len, out, (size_t)n, mac) != 0)
        goto out;
    out[n++] = '.';
    s = jwt_b64url_encode(mac, sizeof(mac), out + n, outlen - (size_t)n);
    if (s < 0)
        goto out;
    n += s;
    if (n > JWT_MAX_BYTES)
        goto out;
    rc = (int)n;
out:
    json_decref(hdr);
    json_decref(payload);
    if (rc < 0)
        out[0] = '\0';
    return rc;
}

int id_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

const char *role_name(enum role role)
{
    switch (role) {
    case ROLE_VIEWER:
        return "viewer";
    case ROLE_CREATOR:
        return "creator";
    case ROLE_ADMIN:
        return "admin";
    case ROLE_FINANCE:
        return "finance";
    case ROLE_OPERATIONS:
        return "operations";
    case ROLE_SUPPORT:
        return "support";
    case ROLE_AUDITOR:
        return "auditor";
    case ROLE_OVERLAY:
        return "overlay";
    }
    return "unknown";
}

int role_staff(enum role role)
{
    return role == ROLE_FINANCE || role == ROLE_OPERATIONS || role == ROLE_SUPPORT || role == ROLE_AUDITOR;
}

const char *jwt_result_name(enum jwt_result r)
{
    switch (r) {
    case JWT_OK:
        return "ok";
    case JWT_MALFORMED:
        return "malformed";
    case JWT_UNKNOWN_KID:
        return "unknown_kid";
    case JWT_BAD_SIGNATURE:
        return "bad_signature";
    case JWT_BAD_CLAIMS:
        return "bad_claims";
    case JWT_EXPIRED:
        return "expired";
    case JWT_NOT_YET_VALID:
        return "not_yet_valid";
    }
    return "unknown";
}
