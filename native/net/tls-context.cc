// Builds SSL_CTX objects with the gateway's fixed security posture: TLS 1.3 (modern) or
// TLS 1.2 ECDHE-AEAD + 1.3 (intermediate), no compression, no renegotiation, no 0-RTT.
#include "net/tls-context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>

namespace vg {
namespace {

// TLS 1.2 suites for the intermediate profile: forward secret, AEAD only.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* kTls13Suites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* kGroups = "X25519:P-256:P-384";

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };

bool ApplyCommon(SSL_CTX* ctx, TlsProfile profile, std::string* error) {
  SSL_CTX_set_min_proto_version(ctx, profile == TlsProfile::Modern ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Idle sessions give their read/write buffers back: the 40 kB-per-idle-session budget.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1 || SSL_CTX_set_ciphersuites(ctx, kTls13Suites) != 1 ||
      SSL_CTX_set1_groups_list(ctx, kGroups) != 1) {
    *error = TakeOpenSslError("cannot configure cipher suites");
    return false;
  }
  return true;
}

int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
               void* arg) {
  // arg: wire-format list of accepted protocols (owned by the SSL_CTX ex-data below).
  auto* accepted = static_cast<std::string*>(arg);
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(accepted->data()),
                            static_cast<unsigned int>(accepted->size()), in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  // A client that offers ALPN but none we speak is refused (RFC 7301, as PostgreSQL 17 does).
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// ALPN lists in wire format, interned for the life of the process: the select callback's
// argument must outlive every SSL_CTX that uses it, and an ex_data free callback would be a
// pointer into this library that OpenSSL keeps calling after a worker unloads it.
const std::string* InternAlpn(const std::string& wire) {
  static std::mutex mu;
  static auto* interned = new std::set<std::string>();
  std::lock_guard<std::mutex> lock(mu);
  return &*interned->insert(wire).first;
}

}  // namespace

std::string TakeOpenSslError(const char* fallback) {
  unsigned long code = ERR_get_error();
  if (code == 0) return fallback;
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  ERR_clear_error();
  // "error:0A000086:SSL routines::certificate verify failed" -> keep the readable reason.
  const char* reason = ERR_reason_error_string(code);
  std::string out = reason ? reason : buf;
  return out;
}

SSL_CTX* BuildServerContext(const ServerContextSpec& spec, std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) { *error = TakeOpenSslError("cannot create TLS context"); return nullptr; }
  if (!ApplyCommon(ctx, spec.profile, error)) { SSL_CTX_free(ctx); return nullptr; }
  SSL_CTX_set_max_early_data(ctx, 0);
  SSL_CTX_set_session_id_context(ctx, reinterpret_cast<const unsigned char*>("vecgate"), 7);
  // No session resumption, as PostgreSQL's own server (SSL_OP_NO_TICKET, cache off): libpq
  // and most drivers never resume, so the two TLS 1.3 tickets OpenSSL would issue after
  // every handshake are CPU spent for nothing, and a client that keeps them holds copies of
  // the session; every handshake is a full one with fresh ECDHE.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

  std::unique_ptr<BIO, BioFree> certBio(BIO_new_mem_buf(spec.certPem.data(), static_cast<int>(spec.certPem.size())));
  X509* leaf = PEM_read_bio_X509(certBio.get(), nullptr, nullptr, nullptr);
  if (!leaf) { *error = "certificate: no PEM certificate found"; SSL_CTX_free(ctx); ERR_clear_error(); return nullptr; }
  int ok = SSL_CTX_use_certificate(ctx, leaf);
  X509_free(leaf);
  if (ok != 1) { *error = "certificate: " + TakeOpenSslError("unusable"); SSL_CTX_free(ctx); return nullptr; }
  while (X509* extra = PEM_read_bio_X509(certBio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) { X509_free(extra); break; }
  }
  ERR_clear_error();  // end-of-PEM is reported as an error

  std::unique_ptr<BIO, BioFree> keyBio(BIO_new_mem_buf(spec.keyPem.data(), static_cast<int>(spec.keyPem.size())));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(keyBio.get(), nullptr, nullptr, nullptr);
  if (!key) { *error = "key: no usable PEM private key found"; SSL_CTX_free(ctx); ERR_clear_error(); return nullptr; }
  ok = SSL_CTX_use_PrivateKey(ctx, key);
  EVP_PKEY_free(key);
  if (ok != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    ERR_clear_error();
    *error = "certificate and key do not match";
    SSL_CTX_free(ctx);
    return nullptr;
  }

  if (!spec.alpn.empty()) {
    std::string wire;
    for (const auto& p : spec.alpn) {
      if (p.empty() || p.size() > 255) continue;
      wire.push_back(static_cast<char>(p.size()));
      wire.append(p);
    }
    SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, const_cast<std::string*>(InternAlpn(wire)));
  }
  return ctx;
}

SSL_CTX* BuildClientContext(const ClientContextSpec& spec, std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) { *error = TakeOpenSslError("cannot create TLS context"); return nullptr; }
  if (!ApplyCommon(ctx, spec.profile, error)) { SSL_CTX_free(ctx); return nullptr; }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  // Upstream sessions are never resumed (PostgreSQL issues no tickets): keep none.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(spec.caPem.data(), static_cast<int>(spec.caPem.size())));
  int added = 0;
  while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, ca) == 1) added++;
    X509_free(ca);
  }
  ERR_clear_error();
  if (added == 0) { *error = "ca: no PEM certificate found"; SSL_CTX_free(ctx); return nullptr; }
  return ctx;
}

}  // namespace vg
