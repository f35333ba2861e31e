#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>

// OpenSSL spells these as macros, which Swift cannot call.
static inline int tandem_ssl_ctx_tls13_only(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1
        && SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1;
}
// No session tickets (each connection is a full handshake; nothing to resume) and no
// renegotiation (TLS 1.3 has none anyway).
static inline void tandem_ssl_ctx_plain_options(SSL_CTX *ctx) {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_num_tickets(ctx, 0);
}
static inline size_t tandem_bio_pending(BIO *b) { return (size_t)BIO_ctrl_pending(b); }
static inline void tandem_bio_set_mem_eof_return(BIO *b, int v) { BIO_set_mem_eof_return(b, v); }

// ALPN on the accepting side: select "tandem-drbd/1" when the connecting side offers it, else
// refuse the handshake (no_application_protocol alert).
static const unsigned char tandem_alpn[] = { 13, 't','a','n','d','e','m','-','d','r','b','d','/','1' };
static inline int tandem_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                     const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl; (void)arg;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, tandem_alpn, sizeof(tandem_alpn), in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}
static inline int tandem_ssl_ctx_use_alpn(SSL_CTX *ctx) {
    SSL_CTX_set_alpn_select_cb(ctx, tandem_alpn_select, NULL);
    return SSL_CTX_set_alpn_protos(ctx, tandem_alpn, sizeof(tandem_alpn)) == 0;
}
// Whether the handshake agreed on Tandem's ALPN.
static inline int tandem_ssl_alpn_agreed(const SSL *ssl) {
    const unsigned char *p = NULL; unsigned int n = 0;
    SSL_get0_alpn_selected(ssl, &p, &n);
    return n == sizeof(tandem_alpn) - 1 && memcmp(p, tandem_alpn + 1, n) == 0;
}
// Pinned peers: the chain is not checked (the fingerprint is, after the handshake).
static inline int tandem_accept_any_chain(int ok, X509_STORE_CTX *ctx) { (void)ok; (void)ctx; return 1; }
static inline void tandem_ssl_ctx_verify_peer(SSL_CTX *ctx, int pinnedOnly) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       pinnedOnly ? tandem_accept_any_chain : NULL);
}
