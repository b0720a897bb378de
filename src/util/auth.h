/*
 * The job key (JACCL_JOB_KEY) and the HMAC-SHA256 primitives the handshakes
 * use to prove it (OpenSSL's libcrypto).  The key never leaves the process.
 */
#ifndef JACCL_UTIL_AUTH_H
#define JACCL_UTIL_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define JACCL_KEY_MIN   16 /* bytes: 32 hex digits */
#define JACCL_KEY_MAX   64 /* bytes: 128 hex digits */
#define JACCL_NONCE_LEN 16
#define JACCL_MAC_LEN   32

struct jaccl_key {
    size_t len; /* 0: no key, the job is unauthenticated */
    uint8_t bytes[JACCL_KEY_MAX];
};

/*
 * Parse hex (JACCL_KEY_MIN..JACCL_KEY_MAX bytes, either case) into key.
 * Returns 0, or -1 with key untouched when hex is malformed.
 */
int jaccl_auth_parse_key(const char *hex, struct jaccl_key *key);

/* Fill buf with len bytes from the system's CSPRNG; 0 on success. */
int jaccl_auth_random(void *buf, size_t len);

/*
 * mac = HMAC-SHA256(key, label || a || b).  The label separates the two
 * directions of a handshake, so a proof cannot be reflected back.  Returns
 * 0, or -1 (no key, or libcrypto failed): the caller must then refuse.
 */
int jaccl_auth_mac(const struct jaccl_key *key, const char *label, const void *a, size_t alen,
                   const void *b, size_t blen, uint8_t mac[JACCL_MAC_LEN]);

/* Constant-time comparison of two MACs; 1 if equal. */
int jaccl_auth_mac_equal(const uint8_t *x, const uint8_t *y);

/* Overwrite a key in memory (the compiler may not drop it). */
void jaccl_auth_wipe(struct jaccl_key *key);

#endif
