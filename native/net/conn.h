// A TCP connection on the calling thread's libuv loop, with optional TLS over OpenSSL.
// Pure C++ over libuv and OpenSSL (no N-API). Bytes reach the owner through ConnEvents;
// TLS runs over a custom BIO that reads straight from the socket's read buffer and writes
// into a per-thread output scratch that is flushed with one try-write per burst.
#pragma once
#include <openssl/ssl.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "net/leg.h"

namespace vg {

class Conn;

// Read size per libuv read; also the largest plaintext burst handed on at once.
constexpr size_t kReadBufferBytes = 64 * 1024;

class ConnEvents {
 public:
  virtual ~ConnEvents() = default;
  // Decrypted (or plain) bytes. Lent for the duration of the call: copy if you keep them.
  virtual void OnPlaintext(Conn* c, const char* data, size_t len) = 0;
  // Called once per socket read after all of it was processed and output flushed.
  virtual void OnReadDone(Conn* c) {}
  // The write queue fell to or below the low-water mark.
  virtual void OnDrain(Conn* c) {}
  virtual void OnHandshake(Conn* c, const std::string* error) = 0;
  virtual void OnConnect(Conn* c, int status) {}
  // The handle is closed; no more events after this one.
  virtual void OnClosed(Conn* c) = 0;
};

// Per-thread I/O state shared by all connections of one loop.
struct ThreadIo {
  explicit ThreadIo(uv_loop_t* l);
  uv_loop_t* loop;
  std::vector<char> readBuf;
  std::vector<char> plainBuf;
  Conn* outOwner = nullptr;
  std::vector<char> out;
  bool readBufBusy = false;
  uint64_t liveConns = 0;
  void Flush();
};

class Conn final : public Leg {
 public:
  // `io` is shared: a connection finalized after its addon instance (thread teardown) must
  // still find it.
  Conn(std::shared_ptr<ThreadIo> io, ConnEvents* events);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Accepts a pending connection from a listening stream. Returns a libuv error code.
  int Accept(uv_stream_t* server);
  // Starts a TCP connect; OnConnect fires with the status.
  int Connect(const struct sockaddr* addr);
  // Starts TLS. `initial` holds bytes already received that belong to the TLS stream.
  bool StartTls(SSL_CTX* ctx, bool server, const std::string& servername, const std::vector<std::string>& alpn,
                const char* initial, size_t initialLen, std::string* error);
  // Writes plaintext (encrypting when TLS is up). Copies what cannot be written at once.
  // Returns false, writing nothing, when the connection is closing or its TLS handshake has
  // not completed (tlsPending(): the caller must wait for OnHandshake; the bindings throw).
  bool Write(const char* data, size_t len) override;
  void PauseRead() override;
  void ResumeRead() override;
  // Graceful: close_notify, flush, close. Forced: close now.
  void Close(CloseReason reason, const std::string& detail) override;
  void Destroy(CloseReason reason, const std::string& detail) override;

  bool closed() const override { return closing_; }
  // TLS was started and its handshake has not completed: writes are refused until it has.
  bool tlsPending() const { return ssl_ != nullptr && !handshakeDone_; }
  size_t queuedBytes() const override { return queued_; }
  CloseReason closeReason() const override { return reason_; }
  const std::string& closeDetail() const override { return detail_; }
  std::string RemoteAddress(int* port) const;
  // TLS facts after the handshake.
  std::string TlsVersion() const;
  std::string TlsCipher() const;
  std::string TlsAlpn() const;
  std::string TlsServerName() const;
  // RFC 5929 tls-server-end-point of the peer certificate (client side); empty when unknown.
  std::vector<unsigned char> ServerEndPoint() const;

  void SetLowWater(size_t bytes) override { lowWater_ = bytes; }
  // Largest plaintext per TLS record this connection writes (1 .. kTlsRecordPlaintext).
  void SetMaxTlsRecord(size_t bytes) override {
    maxRecord_ = bytes == 0 || bytes > kTlsRecordPlaintext ? kTlsRecordPlaintext : bytes;
  }
  // The loop's cached clock (milliseconds).
  uint64_t Now() const override { return uv_now(io_->loop); }

  // Called by the BIO: queue raw (ciphertext or plain) bytes for the socket.
  void QueueRaw(const char* data, size_t len);
  // Called by ThreadIo::Flush.
  void WriteRaw(const char* data, size_t len);

  // The BIO's view of the current input.
  const char* inPtr_ = nullptr;
  size_t inLen_ = 0;

 private:
  static void OnAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  static void OnConnectCb(uv_connect_t* req, int status);
  static void OnCloseCb(uv_handle_t* h);

  void HandleInput(const char* data, size_t len);
  bool DriveHandshake();
  void DrainTls();
  void Fail(CloseReason reason, const std::string& detail);
  void FinishClose();

  std::shared_ptr<ThreadIo> io_;
  ConnEvents* events_;
  uv_tcp_t* tcp_;  // heap: outlives this object when the owner goes away first (orphaned handle)
  SSL* ssl_ = nullptr;
  bool server_ = false;
  bool handshakeDone_ = false;
  bool reading_ = false;
  bool wantRead_ = false;  // owner wants reading (independent of pauses for backpressure)
  bool closing_ = false;
  bool closeAfterDrain_ = false;
  bool handleClosed_ = false;
  bool closeStarted_ = false;
  uv_timer_t* closeTimer_ = nullptr;
  size_t queued_ = 0;
  size_t lowWater_ = 64 * 1024;
  size_t maxRecord_ = kTlsRecordPlaintext;
  CloseReason reason_ = CloseReason::None;
  std::string detail_;
};

}  // namespace vg
