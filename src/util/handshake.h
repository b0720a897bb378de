/*
 * The handshake every jaccl connection starts with (bootstrap and TCP links):
 * mutual challenge-response on the job key, so that a process without the
 * key cannot join and a stranger is dropped without holding up the job.
 *
 * Bytes (integers big-endian; B = the protocol's body length):
 *
 *   HELLO, connector -> acceptor, 24 + B bytes
 *     0 magic u32 | 4 version u16 | 6 flags u16 (bit 0: keyed) | 8 body[B] | 8+B nonce_c[16]
 *   CHALLENGE, acceptor -> connector, 56 bytes
 *     0 magic u32 | 4 version u16 | 6 status u16 | 8 nonce_a[16] | 24 mac_a[32]
 *     mac_a = HMAC-SHA256(K, "jaccl accept" || HELLO || CHALLENGE[0..24))
 *   PROOF, connector -> acceptor, 32 bytes
 *     mac_c = HMAC-SHA256(K, "jaccl connect" || HELLO || CHALLENGE)
 *
 * Each side proves the key over the other's fresh nonce; the key never
 * crosses the wire.  Without a key (both sides) the MACs are zero and not
 * checked.  A non-zero status refuses the connector (key on one side only).
 * The acceptor serves every pending connection at once with poll(), each
 * with its own short deadline, so a silent client delays nobody.
 */
#ifndef JACCL_UTIL_HANDSHAKE_H
#define JACCL_UTIL_HANDSHAKE_H

#include "util/auth.h"
#include "util/err.h"

#include <stddef.h>
#include <stdint.h>

#define JACCL_HS_BODY_MAX      32
#define JACCL_HS_HELLO_MAX     (8 + JACCL_HS_BODY_MAX + JACCL_NONCE_LEN)
#define JACCL_HS_CHALLENGE_LEN (8 + JACCL_NONCE_LEN + JACCL_MAC_LEN)
#define JACCL_HS_PROOF_LEN     JACCL_MAC_LEN
#define JACCL_HS_PENDING       32           /* connections handshaking at once */
#define JACCL_HS_WAIT_NS       5000000000LL /* a real peer answers at once */
#define JACCL_HS_KEYED         1u

enum jaccl_hs_status {
    JACCL_HS_OK = 0,
    JACCL_HS_NEED_KEY = 1, /* the acceptor has a key, the connector none */
    JACCL_HS_NO_KEY = 2,   /* the connector has a key, the acceptor none */
};

struct jaccl_hs_proto {
    uint32_t magic;
    uint16_t version;
    uint16_t body_len; /* <= JACCL_HS_BODY_MAX */
    const char *who;   /* the acceptor's role in messages: "coordinator", "tcp" */
};

/* One connection being handshaken by the acceptor. */
struct jaccl_hs_conn {
    int fd;
    int state;  /* JACCL_HS_WANT_HELLO, then JACCL_HS_WANT_PROOF */
    size_t got; /* bytes of the awaited message received */
    int64_t deadline;
    const char *why; /* set when dropped */
    char peer[64];   /* "ip:port" */
    uint8_t hello[JACCL_HS_HELLO_MAX];
    uint8_t challenge[JACCL_HS_CHALLENGE_LEN];
    uint8_t proof[JACCL_HS_PROOF_LEN];
};

enum { JACCL_HS_WANT_HELLO = 0, JACCL_HS_WANT_PROOF = 1 };

/* What the acceptor does next with a connection. */
enum jaccl_hs_step {
    JACCL_HS_MORE,   /* wait for more bytes */
    JACCL_HS_REPLY,  /* send c->challenge, then wait for the proof */
    JACCL_HS_REFUSE, /* send c->challenge (its status says why), then drop */
    JACCL_HS_DONE,   /* authenticated: the body is hello + 8 */
    JACCL_HS_DROP,   /* a stranger: c->why says why */
};

/*
 * The acceptor's parser, pure but for the nonce it draws: call after c->got
 * grew (it never exceeds jaccl_hs_want(p, c)).
 */
enum jaccl_hs_step jaccl_hs_accept_step(const struct jaccl_hs_proto *p, const struct jaccl_key *key,
                                        struct jaccl_hs_conn *c);
/* Bytes the connection's current message has in all. */
size_t jaccl_hs_want(const struct jaccl_hs_proto *p, const struct jaccl_hs_conn *c);

/*
 * The connector's check of a CHALLENGE for the hello it sent: 0 when good
 * (proof filled in); 1 when the acceptor's MAC is wrong (proof filled in
 * anyway: send it, so the acceptor too can say what failed, then give up);
 * -1 when it is no challenge or a refusal.  *why completes "PEER ...".
 */
int jaccl_hs_check_challenge(const struct jaccl_hs_proto *p, const struct jaccl_key *key,
                             const uint8_t *hello, const uint8_t *ch, size_t ch_len,
                             uint8_t proof[JACCL_HS_PROOF_LEN], const char **why);

struct jaccl_hs_server {
    const struct jaccl_hs_proto *proto;
    const struct jaccl_key *key;
    int lfd;
    int n; /* pending connections in conn[0..n) */
    int dropped;
    char last_drop[200]; /* the latest stranger, for the timeout message */
    struct jaccl_hs_conn conn[JACCL_HS_PENDING];
};

void jaccl_hs_server_init(struct jaccl_hs_server *s, const struct jaccl_hs_proto *p,
                          const struct jaccl_key *key, int lfd);
/*
 * Wait for the next connection that completes the handshake: its socket
 * (tuned) in *fd and its hello body in body[p->body_len].  Strangers are
 * logged and dropped meanwhile.  JACCL_ERR_TIMEOUT at deadline, without a
 * message (the caller names who is missing; jaccl_hs_server_note adds why).
 */
jaccl_result_t jaccl_hs_accept(struct jaccl_hs_server *s, int64_t deadline, int *fd, uint8_t *body,
                               struct jaccl_err *e);
/* "" or "; N connection(s) dropped, the last: ..." for a timeout message. */
const char *jaccl_hs_server_note(struct jaccl_hs_server *s, char *buf, size_t len);
/* Close the connections still handshaking (not the listener). */
void jaccl_hs_server_close(struct jaccl_hs_server *s);

/*
 * The connector's side on a connected socket: send our hello with body,
 * check the acceptor's proof, send ours.  peer names the acceptor in errors.
 */
jaccl_result_t jaccl_hs_connect(int fd, const struct jaccl_hs_proto *p, const struct jaccl_key *key,
                                const void *body, int64_t deadline, const char *peer,
                                struct jaccl_err *e);

#endif
