/* unit_sign.c - tests of core/sign.c (signed callbacks and webhooks) and
 * of the staff roles of core/jwt.c. */
#include <stdio.h>
#include <string.h>

#include "jwt.h"
#include "sign.h"
#include "unit.h"

#define SECRET "paymentsecret0123456"

static void test_round_trip(void)
{
    char sig[SIGN_HEADER_MAX];
    const char body[] = "{\"payment_id\":\"p1\"}";
    CHECK_INT(sign_make(SECRET, strlen(SECRET), 1700000000, body, strlen(body), sig), 0);
    CHECK_INT(strlen(sig), 71);
    CHECK_INT(strncmp(sig, "sha256=", 7), 0);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", sig, body, strlen(body), 1700000000), SIGN_OK);
    /* Inside the window either way, outside it stale. */
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", sig, body, strlen(body), 1700000300), SIGN_OK);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", sig, body, strlen(body), 1699999700), SIGN_OK);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", sig, body, strlen(body), 1700000301), SIGN_STALE);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", sig, body, strlen(body), 1699999699), SIGN_STALE);
    /* Upper-case hex is the same signature. */
    char upper[SIGN_HEADER_MAX];
    memcpy(upper, sig, sizeof upper);
    for (char *c = upper + 7; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", upper, body, strlen(body), 1700000000), SIGN_OK);
}

/* Known answer: HMAC-SHA256("key", "1.abc"), computed with openssl dgst. */
static void test_known_answer(void)
{
    char sig[SIGN_HEADER_MAX];
    CHECK_INT(sign_make("key", 3, 1, "abc", 3, sig), 0);
    CHECK_STR(sig, "sha256=" "90ebc65a2174297bcabd31e7cdb290734ffd97b67d17c09a380b0d4828d3d90c");
}

static void test_refusals(void)
{
    char sig[SIGN_HEADER_MAX];
    const char body[] = "{\"amount_minor\":499}";
    sign_make(SECRET, strlen(SECRET), 1700000000, body, strlen(body), sig);
    const char other[] = "{\"amount_minor\":999}";
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", sig, other, strlen(other), 1700000000), SIGN_BAD);
    CHECK_INT(sign_check("another-secret-0123", 19, "1700000000", sig, body, strlen(body), 1700000000), SIGN_BAD);
    /* The timestamp is signed: another one does not verify. */
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000001", sig, body, strlen(body), 1700000000), SIGN_BAD);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "01700000000", sig, body, strlen(body), 1700000000), SIGN_BAD);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), NULL, sig, body, strlen(body), 1700000000), SIGN_BAD);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", NULL, body, strlen(body), 1700000000), SIGN_BAD);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "-5", sig, body, strlen(body), 1700000000), SIGN_BAD);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "99999999999999999999", sig, body, strlen(body), 0), SIGN_BAD);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "", sig, body, strlen(body), 1700000000), SIGN_BAD);
    char cut[SIGN_HEADER_MAX];
    snprintf(cut, sizeof cut, "%.70s", sig);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", cut, body, strlen(body), 1700000000), SIGN_BAD);
    char noprefix[SIGN_HEADER_MAX];
    snprintf(noprefix, sizeof noprefix, "sha512=%s", sig + 7);
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", noprefix, body, strlen(body), 1700000000), SIGN_BAD);
    char nothex[SIGN_HEADER_MAX];
    memcpy(nothex, sig, sizeof nothex);
    nothex[10] = 'g';
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1700000000", nothex, body, strlen(body), 1700000000), SIGN_BAD);
    /* A stale request with a bad signature is bad, not stale: nothing is
     * told about the window without the secret. */
    CHECK_INT(sign_check(SECRET, strlen(SECRET), "1", cut, body, strlen(body), 1700000000), SIGN_BAD);
}

static void test_staff_roles(void)
{
    static const char *const names[] = {"viewer", "creator", "admin", "finance", "operations", "support", "auditor", "overlay"};
    for (int r = 0; r < ROLE_COUNT; r++) {
        CHECK_STR(role_name((enum role)r), names[r]);
        CHECK_INT(role_parse(names[r], strlen(names[r])), r);
    }
    CHECK_INT(role_parse("Finance", 7), -1);
    CHECK_INT(role_parse("fin", 3), -1);
    char tok[1024];
    struct config cfg;
    config_defaults(&cfg);
    char err[256];
    CHECK_INT(config_set(&cfg, "jwt-secret", "s3cret-s3cret-s3cret-s3cret-1234", err, sizeof err), 0);
    CHECK(jwt_sign("s3cret-s3cret-s3cret-s3cret-1234", 32, NULL, "fin1", ROLE_AUDITOR, 2000000000, tok,
                   sizeof tok) > 0);
    struct jwt_claims c;
    CHECK_INT(jwt_verify(&cfg, tok, strlen(tok), 1700000000, &c), JWT_OK);
    CHECK_INT(c.role, ROLE_AUDITOR);
}

int main(void)
{
    test_round_trip();
    test_known_answer();
    test_refusals();
    test_staff_roles();
    return unit_finish("unit_sign");
}
