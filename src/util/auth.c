#include "util/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int jaccl_auth_parse_key(const char *hex, struct jaccl_key *key)
{
    size_t n = strnlen(hex, 2 * JACCL_KEY_MAX + 1);
    if (n % 2 || n < 2 * JACCL_KEY_MIN || n > 2 * JACCL_KEY_MAX) return -1;
    struct jaccl_key k = {.len = n / 2};
    for (size_t i = 0; i < k.len; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            jaccl_auth_wipe(&k);
            return -1;
        }
        k.bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    *key = k;
    jaccl_auth_wipe(&k);
    return 0;
}

int jaccl_auth_random(void *buf, size_t len)
{
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

int jaccl_auth_mac(const struct jaccl_key *key, const char *label, const void *a, size_t alen,
                   const void *b, size_t blen, uint8_t mac[JACCL_MAC_LEN])
{
    /* The handshake messages are small: one buffer, one call. */
    uint8_t msg[512];
    size_t llen = strlen(label), n = llen + alen + blen;
    unsigned int maclen = JACCL_MAC_LEN;
    if (key->len == 0 || n > sizeof(msg)) return -1;
    memcpy(msg, label, llen);
    memcpy(msg + llen, a, alen);
    memcpy(msg + llen + alen, b, blen);
    if (!HMAC(EVP_sha256(), key->bytes, (int)key->len, msg, n, mac, &maclen)) return -1;
    return maclen == JACCL_MAC_LEN ? 0 : -1;
}

int jaccl_auth_mac_equal(const uint8_t *x, const uint8_t *y)
{
    return CRYPTO_memcmp(x, y, JACCL_MAC_LEN) == 0;
}

void jaccl_auth_wipe(struct jaccl_key *key)
{
    OPENSSL_cleanse(key, sizeof(*key));
}
