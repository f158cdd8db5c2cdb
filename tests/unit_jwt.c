/* unit_jwt.c - tests of server/jwt.c: signing, verification, every refusal,
 * and tokens computed independently (python3's hmac) to pin the format. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "jwt.h"
#include "unit.h"

#define NOW 1732240000LL

/* The test's own base64url encoder, kept apart from jwt.c's so that a bug
 * there cannot hide itself here. */
static void b64url(const unsigned char *in, size_t len, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = 0;

    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        size_t left = len - i;
        if (left > 1)
            v |= (unsigned)in[i + 1] << 8;
        if (left > 2)
            v |= in[i + 2];
        out[n++] = a[(v >> 18) & 63];
        out[n++] = a[(v >> 12) & 63];
        if (left > 1)
            out[n++] = a[(v >> 6) & 63];
        if (left > 2)
            out[n++] = a[v & 63];
    }
    out[n] = '\0';
}

/* Keys of the tests: jwt-secret takes none shorter than 32 bytes. */
#define K "k-0123456789abcdef0123456789abcdef"
#define TAMPER "tamper-key-0123456789abcdef0123456789"
#define ONE "one-0123456789abcdef0123456789abcdef"
#define TWO "two-0123456789abcdef0123456789abcdef"
#define DEFAULT "default-0123456789abcdef0123456789abcdef"
#define OLDS "old-secret-0123456789abcdef0123456789"
#define NEWS "new-secret-0123456789abcdef0123456789"

/* Builds header.payload.signature from raw JSON texts, so that tests can
 * sign tokens jwt_sign would never produce. */
static void mint(const char *hdr, const char *payload, const char *key, char *out)
{
    unsigned char mac[32];
    unsigned int mac_len = 0;
    size_t n;

    b64url((const unsigned char *)hdr, strlen(hdr), out);
    n = strlen(out);
    out[n++] = '.';
    b64url((const unsigned char *)payload, strlen(payload), out + n);
    n = strlen(out);
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)out, n, mac, &mac_len);
    out[n++] = '.';
    b64url(mac, mac_len, out + n);
}

static struct config cfg_with(const char *secrets)
{
    struct config cfg;
    char err[256];

    config_defaults(&cfg);
    if (config_set(&cfg, "jwt-secret", secrets, err, sizeof(err)) != 0)
        fprintf(stderr, "cfg_with(%s): %s\n", secrets, err);
    return cfg;
}

static enum jwt_result verify_at(const struct config *cfg, const char *token, int64_t now)
{
    struct jwt_claims c;
    return jwt_verify(cfg, token, strlen(token), now, &c);
}

#define CHECK_JWT(got, want)                                                              \
    do {                                                                                  \
        enum jwt_result g_ = (got), w_ = (want);                                          \
        unit_checks++;                                                                    \
        if (g_ != w_) {                                                                   \
            unit_failed++;                                                                \
            fprintf(stderr, "%s:%d: check failed: %s gave %s, want %s\n", __FILE__,       \
                    __LINE__, #got, jwt_result_name(g_), jwt_result_name(w_));            \
        }                                                                                 \
    } while (0)

static void test_round_trip(void)
{
    struct config cfg = cfg_with("s3cret-s3cret-s3cret-s3cret-1234");
    struct jwt_claims c;
    char tok[JWT_MAX_BYTES + 1];
    int n = jwt_sign("s3cret-s3cret-s3cret-s3cret-1234", 32, NULL, "u42", ROLE_CREATOR,
                     NOW + 3600, tok, sizeof(tok));

    CHECK(n > 0);
    CHECK_INT(strlen(tok), n);
    CHECK_JWT(jwt_verify(&cfg, tok, (size_t)n, NOW, &c), JWT_OK);
    CHECK_STR(c.sub, "u42");
    CHECK_INT(c.role, ROLE_CREATOR);
    CHECK_INT(c.exp, NOW + 3600);

    /* The token need not be NUL-terminated: trailing bytes past len are ignored. */
    {
        char buf[JWT_MAX_BYTES + 8];
        memcpy(buf, tok, (size_t)n);
        memcpy(buf + n, "garbage", 8);
        CHECK_JWT(jwt_verify(&cfg, buf, (size_t)n, NOW, &c), JWT_OK);
    }

    /* Each role survives the trip. */
    for (int r = ROLE_VIEWER; r <= ROLE_ADMIN; r++) {
        n = jwt_sign("s3cret-s3cret-s3cret-s3cret-1234", 32, NULL, "x", (enum role)r, NOW, tok,
                     sizeof(tok));
        CHECK(n > 0);
        CHECK_JWT(jwt_verify(&cfg, tok, (size_t)n, NOW, &c), JWT_OK);
        CHECK_INT(c.role, r);
    }
}

static void test_known_vectors(void)
{
    /* python3: header {"typ": "JWT", "alg": "HS256"} and payload {"iss":
     * "platform", "sub": "alice", "exp": 2000000000, "role": "creator", "iat":
     * 1700000000} as json.dumps writes them, HMAC-SHA256 with the key below.
     * Spaces, key order and extra claims are the issuer's business. */
    static const char v1[] =
        "eyJ0eXAiOiAiSldUIiwgImFsZyI6ICJIUzI1NiJ9."
        "eyJpc3MiOiAicGxhdGZvcm0iLCAic3ViIjogImFsaWNlIiwgImV4cCI6IDIwMDAwMDAwMDAsICJyb2xlIjog"
        "ImNyZWF0b3IiLCAiaWF0IjogMTcwMDAwMDAwMH0."
        "duMJqtn_CzGzzZh2p255ZsPtyDiwH6Vn2lP5WTysTdg";
    /* python3: {"alg":"HS256","typ":"JWT","kid":"2024-b"} and
     * {"sub":"u42","role":"viewer","exp":1732250000}, compact, key
     * "rotated secret: with colon and 32+ bytes": what jwt_sign must
     * produce byte for byte. */
    static const char v2[] =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjIwMjQtYiJ9."
        "eyJzdWIiOiJ1NDIiLCJyb2xlIjoidmlld2VyIiwiZXhwIjoxNzMyMjUwMDAwfQ."
        "wXJRDbYKRo8pUSYvnU-g1QvOFaOrmAFEHW_aRd4jN6w";
    struct config cfg = cfg_with("tipcast-test-secret-0123456789abcdef");
    struct config rot = cfg_with("2024-a:old secret of 32 bytes or more too,"
                                 "2024-b:rotated secret: with colon and 32+ bytes");
    struct jwt_claims c;
    char tok[JWT_MAX_BYTES + 1];
    const char *key2 = "rotated secret: with colon and 32+ bytes";

    CHECK_JWT(jwt_verify(&cfg, v1, strlen(v1), 1700000000, &c), JWT_OK);
    CHECK_STR(c.sub, "alice");
    CHECK_INT(c.role, ROLE_CREATOR);
    CHECK_INT(c.exp, 2000000000);

    CHECK_INT(jwt_sign(key2, strlen(key2), "2024-b", "u42", ROLE_VIEWER, 1732250000, tok,
                       sizeof(tok)),
              strlen(v2));
    CHECK_STR(tok, v2);
    CHECK_JWT(jwt_verify(&rot, v2, strlen(v2), NOW, &c), JWT_OK);
    CHECK_STR(c.sub, "u42");
    CHECK_INT(c.role, ROLE_VIEWER);
    /* The same token under the wrong secret of the first vector. */
    CHECK_JWT(verify_at(&cfg, v2, NOW), JWT_UNKNOWN_KID);
}

static void test_expiry(void)
{
    struct config cfg = cfg_with(K);
    const int64_t exp = NOW;
    char tok[JWT_MAX_BYTES + 1];

    CHECK(jwt_sign(K, strlen(K), NULL, "u1", ROLE_VIEWER, exp, tok, sizeof(tok)) > 0);
    CHECK_JWT(verify_at(&cfg, tok, exp - 1000), JWT_OK);
    CHECK_JWT(verify_at(&cfg, tok, exp), JWT_OK);
    CHECK_JWT(verify_at(&cfg, tok, exp + JWT_LEEWAY_S), JWT_OK);
    CHECK_JWT(verify_at(&cfg, tok, exp + JWT_LEEWAY_S + 1), JWT_EXPIRED);
    CHECK_JWT(verify_at(&cfg, tok, INT64_MAX), JWT_EXPIRED);

    /* Extreme values must neither overflow (UBSan watches) nor pass wrongly. */
    mint("{\"alg\":\"HS256\"}",
         "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":9223372036854775807}", K, tok);
    CHECK_JWT(verify_at(&cfg, tok, INT64_MAX), JWT_OK);
    mint("{\"alg\":\"HS256\"}",
         "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":-9223372036854775807}", K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_EXPIRED);
    /* Too big for an integer: jansson refuses the JSON. */
    mint("{\"alg\":\"HS256\"}",
         "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":9223372036854775808}", K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
}

static void test_nbf(void)
{
    struct config cfg = cfg_with(K);
    char tok[JWT_MAX_BYTES + 1];
    const int64_t nbf = NOW;

    mint("{\"alg\":\"HS256\"}",
         "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":1832240000,\"nbf\":1732240000}", K, tok);
    CHECK_JWT(verify_at(&cfg, tok, nbf + 100), JWT_OK);
    CHECK_JWT(verify_at(&cfg, tok, nbf), JWT_OK);
    CHECK_JWT(verify_at(&cfg, tok, nbf - JWT_LEEWAY_S), JWT_OK);
    CHECK_JWT(verify_at(&cfg, tok, nbf - JWT_LEEWAY_S - 1), JWT_NOT_YET_VALID);
    CHECK_JWT(verify_at(&cfg, tok, INT64_MIN), JWT_NOT_YET_VALID);

    mint("{\"alg\":\"HS256\"}",
         "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":1832240000,\"nbf\":\"1732240000\"}", K,
         tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_BAD_CLAIMS);
    mint("{\"alg\":\"HS256\"}",
         "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":1832240000,\"nbf\":1.5}", K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_BAD_CLAIMS);
    mint("{\"alg\":\"HS256\"}",
         "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":1832240000,\"nbf\":-9223372036854775807}",
         K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_OK);
}

/* Replaces the character at i with another base64url character whose low
 * bits match, so the token stays well-formed and only its bytes change. */
static void flip(char *tok, size_t i)
{
    tok[i] = tok[i] == 'A' ? 'Q' : 'A';
}

static void test_tamper(void)
{
    struct config cfg = cfg_with(TAMPER);
    char tok[JWT_MAX_BYTES + 1], t[JWT_MAX_BYTES + 1];
    int n = jwt_sign(TAMPER, strlen(TAMPER), NULL, "victim", ROLE_VIEWER, NOW + 60, tok, sizeof(tok));
    const char *dot1 = strchr(tok, '.');
    const char *dot2 = strrchr(tok, '.');
    size_t p = (size_t)(dot1 - tok) + 5;
    size_t s = (size_t)(dot2 - tok) + 1;

    CHECK(n > 0);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_OK);

    /* One byte of the payload. */
    strcpy(t, tok);
    flip(t, p);
    CHECK_JWT(verify_at(&cfg, t, NOW), JWT_BAD_SIGNATURE);
    /* One byte of the signature, first and middle. */
    strcpy(t, tok);
    flip(t, s);
    CHECK_JWT(verify_at(&cfg, t, NOW), JWT_BAD_SIGNATURE);
    strcpy(t, tok);
    flip(t, s + 20);
    CHECK_JWT(verify_at(&cfg, t, NOW), JWT_BAD_SIGNATURE);
    /* A signature of the wrong length: 29 bytes, still canonical base64url
     * because its last characters are kept. */
    strcpy(t, tok);
    memmove(t + s, t + s + 4, strlen(t + s + 4) + 1);
    CHECK_JWT(verify_at(&cfg, t, NOW), JWT_BAD_SIGNATURE);
    /* A role raised to admin with the signature left as it was. */
    {
        char forged[JWT_MAX_BYTES + 1];
        mint("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
             "{\"sub\":\"victim\",\"role\":\"admin\",\"exp\":1732240060}", "not-the-key",
             forged);
        CHECK_JWT(verify_at(&cfg, forged, NOW), JWT_BAD_SIGNATURE);
        /* ...and with the genuine signature grafted on. */
        strcpy(strrchr(forged, '.') + 1, dot2 + 1);
        CHECK_JWT(verify_at(&cfg, forged, NOW), JWT_BAD_SIGNATURE);
    }
    /* A different secret. */
    {
        struct config other = cfg_with("another-key-0123456789abcdef0123456789");
        CHECK_JWT(verify_at(&other, tok, NOW), JWT_BAD_SIGNATURE);
    }
    /* A tampered payload is refused before its garbage is parsed. */
    mint("{\"alg\":\"HS256\"}", "not json at all", "wrong", t);
    CHECK_JWT(verify_at(&cfg, t, NOW), JWT_BAD_SIGNATURE);
}

static void test_malformed(void)
{
    struct config cfg = cfg_with(K);
    struct jwt_claims c;
    char tok[JWT_MAX_BYTES + 1];
    char big[5001];
    static const char hs512[] =
        "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9."
        "eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6MjAwMDAwMDAwMH0."
        "RMaAd7nqCI7LBFakNtXNot1QLMwx9LxvzOFlUpk6pzgbZuM7MCFu75kifMcqS-KKrjIYTudUfDrZKIRAXRrn1w";
    static const char none[] =
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6MjAwMDAwMDAwMH0.";
    const char *pl = "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":1832240000}";

    CHECK_JWT(verify_at(&cfg, hs512, NOW), JWT_MALFORMED);
    CHECK_JWT(verify_at(&cfg, none, NOW), JWT_MALFORMED);
    /* alg none with a signature that happens to be an HS256 one. */
    mint("{\"alg\":\"none\"}", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
    mint("{\"alg\":\"hs256\"}", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
    mint("{\"typ\":\"JWT\"}", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
    mint("{\"alg\":256}", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
    /* A second "alg" could fool a parser that keeps the first or the last. */
    mint("{\"alg\":\"HS256\",\"alg\":\"none\"}", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
    mint("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
    mint("[\"HS256\"]", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
    mint("{\"alg\":\"HS256\"", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);
    mint("{\"alg\":\"HS256\",\"kid\":7}", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_MALFORMED);

    /* Missing and extra parts. */
    mint("{\"alg\":\"HS256\"}", pl, K, tok);
    CHECK_JWT(verify_at(&cfg, tok, NOW), JWT_OK);
    {
        char t[JWT_MAX_BYTES + 8];
        strcpy(t, tok);
        *strrchr(t, '.') = '\0';
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        strcpy(t, tok);
        strcat(t, ".");
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        strcpy(t, tok);
        strcat(t, ".AAAA");
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        /* Empty payload. */
        strcpy(t, tok);
        memmove(strchr(t, '.') + 1, strrchr(t, '.'), strlen(strrchr(t, '.')) + 1);
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        /* Padding, standard base64 characters, a blank, a NUL inside len. */
        strcpy(t, tok);
        strcat(t, "=");
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        strcpy(t, tok);
        t[3] = '+';
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        strcpy(t, tok);
        t[strchr(t, '.') - t + 2] = '/';
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        strcpy(t, tok);
        t[5] = ' ';
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        strcpy(t, tok);
        t[5] = '\0';
        CHECK_JWT(jwt_verify(&cfg, t, strlen(tok), NOW, &c), JWT_MALFORMED);
        /* A part whose length no encoding has (4k + 1): "eyJhb" is five characters. */
        strcpy(t, "eyJhb");
        strcat(t, strchr(tok, '.'));
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
        /* Non-zero leftover bits in the last character of the signature. */
        strcpy(t, tok);
        {
            char *last = t + strlen(t) - 1;
            *last = *last == 'B' ? 'C' : 'B';
        }
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_MALFORMED);
    }
    CHECK_JWT(verify_at(&cfg, "", NOW), JWT_MALFORMED);
    CHECK_JWT(verify_at(&cfg, "..", NOW), JWT_MALFORMED);
    CHECK_JWT(verify_at(&cfg, "abc", NOW), JWT_MALFORMED);
    CHECK_JWT(verify_at(&cfg, "a.b.c", NOW), JWT_MALFORMED);
    CHECK_JWT(jwt_verify(&cfg, NULL, 10, NOW, &c), JWT_MALFORMED);
    CHECK_JWT(jwt_verify(NULL, tok, strlen(tok), NOW, &c), JWT_MALFORMED);

    /* Too long, however well-formed the start: 5000 bytes. */
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, tok, strlen(tok));
    CHECK_JWT(verify_at(&cfg, big, NOW), JWT_MALFORMED);
    /* A token of exactly JWT_MAX_BYTES + 1 is refused by its length alone. */
    CHECK_JWT(jwt_verify(&cfg, big, JWT_MAX_BYTES + 1, NOW, &c), JWT_MALFORMED);
    /* ...while a valid token padded to JWT_MAX_BYTES with an ignored header
     * field is still accepted. */
    {
        char hdr[JWT_MAX_BYTES];
        char t[JWT_MAX_BYTES * 2];
        size_t used;
        strcpy(hdr, "{\"alg\":\"HS256\",\"x\":\"");
        used = strlen(hdr);
        memset(hdr + used, 'x', 2900);
        strcpy(hdr + used + 2900, "\"}");
        mint(hdr, pl, K, t);
        CHECK(strlen(t) <= JWT_MAX_BYTES);
        CHECK_JWT(verify_at(&cfg, t, NOW), JWT_OK);
    }
}

static void test_kid(void)
{
    struct config two = cfg_with("k1:" ONE ",k2:" TWO);
    struct config with_default = cfg_with("k1:" ONE "," DEFAULT ",k2:" TWO);
    struct config none;
    char tok[JWT_MAX_BYTES + 1];
    const char *pl = "{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":1832240000}";

    CHECK(jwt_sign(TWO, strlen(TWO), "k2", "u1", ROLE_VIEWER, NOW + 60, tok, sizeof(tok)) > 0);
    CHECK_JWT(verify_at(&two, tok, NOW), JWT_OK);
    CHECK(jwt_sign(ONE, strlen(ONE), "k2", "u1", ROLE_VIEWER, NOW + 60, tok, sizeof(tok)) > 0);
    CHECK_JWT(verify_at(&two, tok, NOW), JWT_BAD_SIGNATURE);
    CHECK(jwt_sign(TWO, strlen(TWO), "k3", "u1", ROLE_VIEWER, NOW + 60, tok, sizeof(tok)) > 0);
    CHECK_JWT(verify_at(&two, tok, NOW), JWT_UNKNOWN_KID);

    /* No kid: the entry without one, else the first. */
    CHECK(jwt_sign(ONE, strlen(ONE), NULL, "u1", ROLE_VIEWER, NOW + 60, tok, sizeof(tok)) > 0);
    CHECK_JWT(verify_at(&two, tok, NOW), JWT_OK);
    CHECK_JWT(verify_at(&with_default, tok, NOW), JWT_BAD_SIGNATURE);
    CHECK(jwt_sign(DEFAULT, strlen(DEFAULT), NULL, "u1", ROLE_VIEWER, NOW + 60, tok, sizeof(tok)) > 0);
    CHECK_JWT(verify_at(&with_default, tok, NOW), JWT_OK);
    CHECK_JWT(verify_at(&two, tok, NOW), JWT_BAD_SIGNATURE);

    /* An empty kid names no secret, not the default one. */
    mint("{\"alg\":\"HS256\",\"kid\":\"\"}", pl, DEFAULT, tok);
    CHECK_JWT(verify_at(&with_default, tok, NOW), JWT_UNKNOWN_KID);
    /* A kid is compared whole, not as a prefix. */
    mint("{\"alg\":\"HS256\",\"kid\":\"k\"}", pl, ONE, tok);
    CHECK_JWT(verify_at(&two, tok, NOW), JWT_UNKNOWN_KID);
    mint("{\"alg\":\"HS256\",\"kid\":\"k10\"}", pl, ONE, tok);
    CHECK_JWT(verify_at(&two, tok, NOW), JWT_UNKNOWN_KID);

    /* Rotation: old and new both valid while both are configured; dropping
     * the old one refuses its tokens. */
    {
        struct config before = cfg_with("2024-a:" OLDS);
        struct config during = cfg_with("2024-a:" OLDS ",2024-b:" NEWS);
        struct config after = cfg_with("2024-b:" NEWS);
        char old_tok[JWT_MAX_BYTES + 1], new_tok[JWT_MAX_BYTES + 1];

        CHECK(jwt_sign(OLDS, strlen(OLDS), "2024-a", "u1", ROLE_VIEWER, NOW + 60, old_tok,
                       sizeof(old_tok)) > 0);
        CHECK(jwt_sign(NEWS, strlen(NEWS), "2024-b", "u1", ROLE_VIEWER, NOW + 60, new_tok,
                       sizeof(new_tok)) > 0);
        CHECK_JWT(verify_at(&before, old_tok, NOW), JWT_OK);
        CHECK_JWT(verify_at(&before, new_tok, NOW), JWT_UNKNOWN_KID);
        CHECK_JWT(verify_at(&during, old_tok, NOW), JWT_OK);
        CHECK_JWT(verify_at(&during, new_tok, NOW), JWT_OK);
        CHECK_JWT(verify_at(&after, old_tok, NOW), JWT_UNKNOWN_KID);
        CHECK_JWT(verify_at(&after, new_tok, NOW), JWT_OK);
    }

    /* No secret configured at all. */
    config_defaults(&none);
    CHECK(jwt_sign(ONE, strlen(ONE), NULL, "u1", ROLE_VIEWER, NOW + 60, tok, sizeof(tok)) > 0);
    CHECK_JWT(verify_at(&none, tok, NOW), JWT_UNKNOWN_KID);
}

static void test_claims(void)
{
    struct config cfg = cfg_with(K);
    struct jwt_claims c;
    char tok[JWT_MAX_BYTES + 1];
    const char *h = "{\"alg\":\"HS256\"}";
    static const struct {
        const char *payload;
        enum jwt_result want;
    } cases[] = {
        {"{\"sub\":\"a/b\",\"role\":\"viewer\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"a b\",\"role\":\"viewer\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"\",\"role\":\"viewer\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"0123456789012345678901234567890123456789012345678901234567890123\","
         "\"role\":\"viewer\",\"exp\":1832240000}",
         JWT_OK},
        {"{\"sub\":\"01234567890123456789012345678901234567890123456789012345678901234\","
         "\"role\":\"viewer\",\"exp\":1832240000}",
         JWT_BAD_CLAIMS},
        {"{\"sub\":42,\"role\":\"viewer\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"role\":\"viewer\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u\\u00e9\",\"role\":\"viewer\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        /* jansson refuses \u0000 in strings, so this never reaches id_valid. */
        {"{\"sub\":\"u\\u0000x\",\"role\":\"viewer\",\"exp\":1832240000}", JWT_MALFORMED},
        {"{\"sub\":\"u1\",\"role\":\"root\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"role\":\"Admin\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"role\":\"admin \",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"role\":[\"admin\"],\"exp\":1832240000}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":\"1832240000\"}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":1832240000.0}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":null}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"role\":\"viewer\"}", JWT_BAD_CLAIMS},
        {"{\"sub\":\"u1\",\"role\":\"viewer\",\"exp\":1832240000,\"sub\":\"admin\"}",
         JWT_MALFORMED},
        {"[\"u1\",\"viewer\",1832240000]", JWT_MALFORMED},
        {"{\"sub\":\"u1\",", JWT_MALFORMED},
        {"{\"sub\":\"a.b-c_D9\",\"role\":\"admin\",\"exp\":1832240000,\"extra\":{\"x\":[1]}}",
         JWT_OK},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum jwt_result r;

        mint(h, cases[i].payload, K, tok);
        memset(&c, 0xAA, sizeof(c));
        r = jwt_verify(&cfg, tok, strlen(tok), NOW, &c);
        if (r != cases[i].want)
            fprintf(stderr, "case %zu: %s\n", i, cases[i].payload);
        CHECK_JWT(r, cases[i].want);
        if (r != JWT_OK) {
            /* On failure the claims are zeroed, never half-filled. */
            static const struct jwt_claims zero;
            CHECK(memcmp(&c, &zero, sizeof(c)) == 0);
        }
    }
}

static void test_sign_limits(void)
{
    char tok[JWT_MAX_BYTES + 1];
    char small[16];
    int n = jwt_sign(K, strlen(K), NULL, "u1", ROLE_VIEWER, NOW, tok, sizeof(tok));
    char exact[256];
    char kid64[65];

    CHECK(n > 0);
    CHECK(n < (int)sizeof(exact));
    CHECK_INT(jwt_sign(K, strlen(K), NULL, "u1", ROLE_VIEWER, NOW, exact, (size_t)n + 1), n);
    CHECK_STR(exact, tok);
    CHECK_INT(jwt_sign(K, strlen(K), NULL, "u1", ROLE_VIEWER, NOW, exact, (size_t)n), -1);
    CHECK_INT(jwt_sign(K, strlen(K), NULL, "u1", ROLE_VIEWER, NOW, small, sizeof(small)), -1);
    CHECK_INT(jwt_sign(K, strlen(K), NULL, "a/b", ROLE_VIEWER, NOW, tok, sizeof(tok)), -1);
    CHECK_INT(jwt_sign(K, strlen(K), NULL, "", ROLE_VIEWER, NOW, tok, sizeof(tok)), -1);
    CHECK_INT(jwt_sign(K, strlen(K), NULL, NULL, ROLE_VIEWER, NOW, tok, sizeof(tok)), -1);
    CHECK_INT(jwt_sign(K, strlen(K), NULL, "u1", (enum role)ROLE_COUNT, NOW, tok, sizeof(tok)), -1);
    CHECK_INT(jwt_sign(K, strlen(K), "", "u1", ROLE_VIEWER, NOW, tok, sizeof(tok)), -1);
    memset(kid64, 'k', 64);
    kid64[64] = '\0';
    CHECK_INT(jwt_sign(K, strlen(K), kid64, "u1", ROLE_VIEWER, NOW, tok, sizeof(tok)), -1);
    kid64[63] = '\0';
    CHECK(jwt_sign(K, strlen(K), kid64, "u1", ROLE_VIEWER, NOW, tok, sizeof(tok)) > 0);
    /* A kid with characters JSON must escape still round-trips. */
    {
        struct config cfg = cfg_with("we\"ird\\kid:" K);
        struct jwt_claims c;
        CHECK(jwt_sign(K, strlen(K), "we\"ird\\kid", "u1", ROLE_VIEWER, NOW, tok, sizeof(tok)) > 0);
        CHECK_JWT(jwt_verify(&cfg, tok, strlen(tok), NOW, &c), JWT_OK);
    }
}

static void test_names(void)
{
    CHECK(id_valid("alice", 5));
    CHECK(id_valid("A-z_0.9", 7));
    CHECK(!id_valid("", 0));
    CHECK(!id_valid(NULL, 3));
    CHECK(!id_valid("a/b", 3));
    CHECK(!id_valid("a b", 3));
    CHECK(!id_valid("a\0b", 3));
    CHECK(id_valid("a\0b", 1));
    {
        char id[ID_MAX + 1];
        memset(id, 'x', sizeof(id));
        CHECK(id_valid(id, ID_MAX));
        CHECK(!id_valid(id, ID_MAX + 1));
    }
    CHECK_STR(role_name(ROLE_VIEWER), "viewer");
    CHECK_STR(role_name(ROLE_CREATOR), "creator");
    CHECK_STR(role_name(ROLE_ADMIN), "admin");
    CHECK_STR(jwt_result_name(JWT_OK), "ok");
    CHECK_STR(jwt_result_name(JWT_MALFORMED), "malformed");
    CHECK_STR(jwt_result_name(JWT_UNKNOWN_KID), "unknown_kid");
    CHECK_STR(jwt_result_name(JWT_BAD_SIGNATURE), "bad_signature");
    CHECK_STR(jwt_result_name(JWT_BAD_CLAIMS), "bad_claims");
    CHECK_STR(jwt_result_name(JWT_EXPIRED), "expired");
    CHECK_STR(jwt_result_name(JWT_NOT_YET_VALID), "not_yet_valid");
}

int main(void)
{
    test_round_trip();
    test_known_vectors();
    test_expiry();
    test_nbf();
    test_tamper();
    test_malformed();
    test_kid();
    test_claims();
    test_sign_limits();
    test_names();
    return unit_finish("unit_jwt");
}
