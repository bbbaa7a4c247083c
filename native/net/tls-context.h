// TLS contexts (OpenSSL SSL_CTX) for the client-facing server side and the verified upstream
// client side. Pure OpenSSL, no N-API. Contexts are immutable once built; rotation builds a
// new one (live sessions keep a reference to the one they started with).
#pragma once
#include <openssl/ssl.h>
#include <string>
#include <vector>

namespace vg {

enum class TlsProfile { Modern, Intermediate };

struct ServerContextSpec {
  std::string certPem;  // chain, leaf first
  std::string keyPem;
  TlsProfile profile = TlsProfile::Modern;
  std::vector<std::string> alpn;  // protocols accepted; empty = no ALPN selection
};

struct ClientContextSpec {
  std::string caPem;  // trusted roots (required: verification is always on)
  TlsProfile profile = TlsProfile::Intermediate;
};

// Returns nullptr and fills `error` on failure. The caller owns one reference.
SSL_CTX* BuildServerContext(const ServerContextSpec& spec, std::string* error);
SSL_CTX* BuildClientContext(const ClientContextSpec& spec, std::string* error);

// Drains OpenSSL's thread-local error queue into one readable line.
std::string TakeOpenSslError(const char* fallback);

}  // namespace vg
