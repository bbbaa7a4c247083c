// See conn.h. The hot path: OnRead -> HandleInput -> (TLS) DrainTls -> events->OnPlaintext
// -> peer Write -> SSL_write -> BIO -> ThreadIo::out -> one try-write at the end of the read.
#include "net/conn.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "net/tls-context.h"

namespace vg {
namespace {

// SSL_get_error needs an empty error queue before each TLS call. Checking is cheaper than
// clearing (ERR_clear_error walks every slot of the thread's queue), and on the data path
// the queue is almost always empty already.
inline void EnsureNoOpenSslError() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// Longest a graceful close waits for a peer to take queued bytes before closing anyway.
constexpr uint64_t kGracefulCloseTimeoutMs = 10000;

struct WriteReq {
  uv_write_t req;
  size_t len;
  char data[1];
};

BIO_METHOD* g_bioMethod = nullptr;
std::once_flag g_bioOnce;

int BioRead(BIO* b, char* out, int outl) {
  Conn* c = static_cast<Conn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (!c || c->inLen_ == 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  size_t n = c->inLen_ < static_cast<size_t>(outl) ? c->inLen_ : static_cast<size_t>(outl);
  memcpy(out, c->inPtr_, n);
  c->inPtr_ += n;
  c->inLen_ -= n;
  return static_cast<int>(n);
}

int BioWrite(BIO* b, const char* in, int inl) {
  Conn* c = static_cast<Conn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (!c) return -1;
  c->QueueRaw(in, static_cast<size_t>(inl));
  return inl;
}

long BioCtrl(BIO*, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    default:
      return 0;
  }
}

int BioCreate(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int BioDestroy(BIO*) { return 1; }

BIO_METHOD* Method() {
  std::call_once(g_bioOnce, [] {
    g_bioMethod = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "vecgate-socket");
    BIO_meth_set_read(g_bioMethod, BioRead);
    BIO_meth_set_write(g_bioMethod, BioWrite);
    BIO_meth_set_ctrl(g_bioMethod, BioCtrl);
    BIO_meth_set_create(g_bioMethod, BioCreate);
    BIO_meth_set_destroy(g_bioMethod, BioDestroy);
  });
  return g_bioMethod;
}

bool IsIpLiteral(const std::string& s) {
  unsigned char buf[16];
  return uv_inet_pton(AF_INET, s.c_str(), buf) == 0 || uv_inet_pton(AF_INET6, s.c_str(), buf) == 0;
}

}  // namespace

ThreadIo::ThreadIo(uv_loop_t* l) : loop(l), readBuf(kReadBufferBytes), plainBuf(kReadBufferBytes) {
  out.reserve(kReadBufferBytes + 4096);
}

void ThreadIo::Flush() {
  if (!outOwner) return;
  Conn* c = outOwner;
  outOwner = nullptr;
  if (!out.empty()) c->WriteRaw(out.data(), out.size());
  out.clear();
}

Conn::Conn(std::shared_ptr<ThreadIo> io, ConnEvents* events) : io_(std::move(io)), events_(events), tcp_(new uv_tcp_t) {
  uv_tcp_init(io_->loop, tcp_);
  tcp_->data = this;
  io_->liveConns++;
}

Conn::~Conn() {
  // Normally the handle is closed first. When the owner is finalized with the handle still
  // open (thread teardown), orphan it: callbacks see data == nullptr and only free memory.
  if (!handleClosed_) {
    tcp_->data = nullptr;
    if (!closeStarted_) uv_close(reinterpret_cast<uv_handle_t*>(tcp_), OnCloseCb);
    if (closeTimer_) closeTimer_->data = nullptr;
    io_->liveConns--;
  } else {
    delete tcp_;
  }
  if (io_->outOwner == this) {
    io_->outOwner = nullptr;
    io_->out.clear();
  }
  if (ssl_) SSL_free(ssl_);
}

int Conn::Accept(uv_stream_t* server) {
  int r = uv_accept(server, reinterpret_cast<uv_stream_t*>(tcp_));
  if (r != 0) return r;
  uv_tcp_nodelay(tcp_, 1);
  uv_tcp_keepalive(tcp_, 1, 60);
  wantRead_ = true;
  ResumeRead();
  return 0;
}

int Conn::Connect(const struct sockaddr* addr) {
  auto* req = new uv_connect_t;
  int r = uv_tcp_connect(req, tcp_, addr, OnConnectCb);
  if (r != 0) delete req;
  return r;
}

void Conn::OnConnectCb(uv_connect_t* req, int status) {
  Conn* c = static_cast<Conn*>(req->handle->data);
  delete req;
  if (!c || c->handleClosed_) return;
  if (c->closing_) status = status == 0 ? UV_ECANCELED : status;
  if (status == 0 && !c->closing_) {
    uv_tcp_nodelay(c->tcp_, 1);
    uv_tcp_keepalive(c->tcp_, 1, 60);
    c->wantRead_ = true;
    c->ResumeRead();
  }
  c->events_->OnConnect(c, status);
  c->io_->Flush();
}

bool Conn::StartTls(SSL_CTX* ctx, bool server, const std::string& servername, const std::vector<std::string>& alpn,
                    const char* initial, size_t initialLen, std::string* error) {
  if (ssl_) { *error = "TLS already started"; return false; }
  if (closing_) { *error = "connection closed"; return false; }
  ERR_clear_error();
  ssl_ = SSL_new(ctx);
  if (!ssl_) { *error = TakeOpenSslError("cannot create TLS session"); return false; }
  server_ = server;
  BIO* bio = BIO_new(Method());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    if (!servername.empty()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (IsIpLiteral(servername)) {
        X509_VERIFY_PARAM_set1_ip_asc(param, servername.c_str());
      } else {
        SSL_set_tlsext_host_name(ssl_, servername.c_str());
        X509_VERIFY_PARAM_set1_host(param, servername.c_str(), 0);
      }
    }
    if (!alpn.empty()) {
      std::string wire;
      for (const auto& p : alpn) {
        wire.push_back(static_cast<char>(p.size()));
        wire.append(p);
      }
      SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
    }
  }
  if (server && initialLen > 0) {
    HandleInput(initial, initialLen);
  } else if (!server) {
    DriveHandshake();
  }
  io_->Flush();
  return true;
}

void Conn::QueueRaw(const char* data, size_t len) {
  if (io_->outOwner && io_->outOwner != this) io_->Flush();
  io_->outOwner = this;
  io_->out.insert(io_->out.end(), data, data + len);
}

void Conn::WriteRaw(const char* data, size_t len) {
  if (handleClosed_ || len == 0) return;
  if (queued_ == 0) {
    uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    int r = uv_try_write(reinterpret_cast<uv_stream_t*>(tcp_), &b, 1);
    if (r > 0) {
      data += r;
      len -= static_cast<size_t>(r);
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      Fail(CloseReason::WriteError, uv_err_name(r));
      return;
    }
    if (len == 0) return;
  }
  auto* w = static_cast<WriteReq*>(malloc(sizeof(WriteReq) + len));
  w->len = len;
  memcpy(w->data, data, len);
  w->req.data = this;
  uv_buf_t b = uv_buf_init(w->data, static_cast<unsigned>(len));
  int r = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(tcp_), &b, 1, OnWrite);
  if (r != 0) {
    free(w);
    Fail(CloseReason::WriteError, uv_err_name(r));
    return;
  }
  queued_ += len;
}

void Conn::OnWrite(uv_write_t* req, int status) {
  auto* w = reinterpret_cast<WriteReq*>(req);
  Conn* c = static_cast<Conn*>(req->handle->data);
  if (!c) {
    free(w);
    return;
  }
  size_t before = c->queued_;
  c->queued_ -= w->len;
  free(w);
  if (status < 0) {
    if (status != UV_ECANCELED && !c->closing_) c->Fail(CloseReason::WriteError, uv_err_name(status));
    else if (c->closeAfterDrain_ && c->queued_ == 0) c->FinishClose();
    return;
  }
  if (c->closeAfterDrain_) {
    if (c->queued_ == 0) c->FinishClose();
    return;
  }
  if (before > c->lowWater_ && c->queued_ <= c->lowWater_) {
    c->events_->OnDrain(c);
    c->io_->Flush();
  }
}

bool Conn::Write(const char* data, size_t len) {
  if (closing_) return false;
  if (ssl_) {
    if (!handshakeDone_) return false;  // see tlsPending(): the bindings refuse such writes
    EnsureNoOpenSslError();
    while (len > 0) {
      int n = static_cast<int>(len < maxRecord_ ? len : maxRecord_);
      int r = SSL_write(ssl_, data, n);
      if (r <= 0) {
        Fail(CloseReason::TlsError, TakeOpenSslError("TLS write failed"));
        return false;
      }
      data += r;
      len -= static_cast<size_t>(r);
    }
  } else {
    QueueRaw(data, len);
  }
  return true;
}

void Conn::PauseRead() {
  if (reading_) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(tcp_));
    reading_ = false;
  }
}

void Conn::ResumeRead() {
  if (!reading_ && wantRead_ && !closing_) {
    if (uv_read_start(reinterpret_cast<uv_stream_t*>(tcp_), OnAlloc, OnRead) == 0) reading_ = true;
  }
}

void Conn::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Conn* c = static_cast<Conn*>(h->data);
  if (!c) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  // One read buffer per thread: every read is consumed before the callback returns.
  if (c->io_->readBufBusy) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  c->io_->readBufBusy = true;
  *buf = uv_buf_init(c->io_->readBuf.data(), static_cast<unsigned>(c->io_->readBuf.size()));
}

void Conn::OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  Conn* c = static_cast<Conn*>(s->data);
  if (!c) return;
  if (buf->base == c->io_->readBuf.data()) c->io_->readBufBusy = false;
  if (nread == 0) return;
  if (nread < 0) {
    if (nread == UV_EOF) {
      c->Close(CloseReason::Eof, "");
    } else if (nread != UV_ENOBUFS) {
      c->Fail(CloseReason::ReadError, uv_err_name(static_cast<int>(nread)));
    }
    c->io_->Flush();
    return;
  }
  c->HandleInput(buf->base, static_cast<size_t>(nread));
  c->io_->Flush();
  if (!c->closing_) c->events_->OnReadDone(c);
  c->io_->Flush();
}

void Conn::HandleInput(const char* data, size_t len) {
  if (closing_) return;
  if (!ssl_) {
    events_->OnPlaintext(this, data, len);
    return;
  }
  inPtr_ = data;
  inLen_ = len;
  if (!handshakeDone_ && !DriveHandshake()) {
    inPtr_ = nullptr;
    inLen_ = 0;
    return;
  }
  DrainTls();
  inPtr_ = nullptr;
  inLen_ = 0;
}

bool Conn::DriveHandshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshakeDone_ = true;
    io_->Flush();
    events_->OnHandshake(this, nullptr);
    return !closing_;
  }
  int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return false;
  std::string msg;
  long verify = server_ ? X509_V_OK : SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    msg = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    ERR_clear_error();
  } else {
    msg = TakeOpenSslError(err == SSL_ERROR_SYSCALL ? "connection closed during the TLS handshake" : "TLS handshake failed");
  }
  io_->Flush();  // let the alert reach the peer
  events_->OnHandshake(this, &msg);
  Destroy(CloseReason::TlsHandshake, msg);
  return false;
}

void Conn::DrainTls() {
  char* out = io_->plainBuf.data();
  size_t cap = io_->plainBuf.size();
  size_t have = 0;
  EnsureNoOpenSslError();
  while (!closing_) {
    if (inLen_ == 0 && SSL_has_pending(ssl_) == 0) {
      // Nothing left to decrypt. Not calling SSL_read here matters: a read that finds no
      // input first allocates the record read buffer (~17 kB) and keeps it, which undoes
      // SSL_MODE_RELEASE_BUFFERS for every idle connection.
      if (have > 0) events_->OnPlaintext(this, out, have);
      return;
    }
    int r = SSL_read(ssl_, out + have, static_cast<int>(cap - have));
    if (r > 0) {
      have += static_cast<size_t>(r);
      if (have == cap) {
        events_->OnPlaintext(this, out, have);
        have = 0;
      }
      continue;
    }
    // SSL_get_error must see the failed SSL_read's state: take it before the owner's
    // callback runs (which may SSL_write on this very connection).
    int err = SSL_get_error(ssl_, r);
    std::string tlsError = err == SSL_ERROR_SSL ? TakeOpenSslError("TLS record error") : std::string();
    if (have > 0) {
      events_->OnPlaintext(this, out, have);
      have = 0;
      if (closing_) return;
    }
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
    if (err == SSL_ERROR_ZERO_RETURN) {
      Close(CloseReason::Eof, "close_notify");
      return;
    }
    Fail(CloseReason::TlsError, err == SSL_ERROR_SSL ? tlsError : std::string("connection closed without close_notify"));
    return;
  }
}

void Conn::Fail(CloseReason reason, const std::string& detail) { Destroy(reason, detail); }

void Conn::Close(CloseReason reason, const std::string& detail) {
  if (closing_) return;
  closing_ = true;
  reason_ = reason;
  detail_ = detail;
  PauseRead();
  if (ssl_ && handshakeDone_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // queues close_notify
    ERR_clear_error();
  }
  io_->Flush();
  if (queued_ == 0) {
    FinishClose();
  } else {
    closeAfterDrain_ = true;
    auto* timer = new uv_timer_t;
    uv_timer_init(io_->loop, timer);
    timer->data = this;
    // The timer is closed with the connection's handle by FinishClose.
    uv_timer_start(
        timer,
        [](uv_timer_t* t) {
          Conn* c = static_cast<Conn*>(t->data);
          if (c) {
            c->detail_ += c->detail_.empty() ? "peer did not read queued bytes" : "; peer did not read queued bytes";
            c->FinishClose();
          }
          uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        },
        kGracefulCloseTimeoutMs, 0);
    closeTimer_ = timer;
  }
}

void Conn::Destroy(CloseReason reason, const std::string& detail) {
  if (!closing_) {
    closing_ = true;
    reason_ = reason;
    detail_ = detail;
  }
  PauseRead();
  FinishClose();
}

void Conn::FinishClose() {
  if (closeStarted_) return;
  closeStarted_ = true;
  if (closeTimer_) {
    uv_timer_t* t = closeTimer_;
    closeTimer_ = nullptr;
    if (t->data) {
      t->data = nullptr;
      uv_timer_stop(t);
      uv_close(reinterpret_cast<uv_handle_t*>(t), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    }
  }
  if (io_->outOwner == this) {
    io_->outOwner = nullptr;
    io_->out.clear();
  }
  uv_close(reinterpret_cast<uv_handle_t*>(tcp_), OnCloseCb);
}

void Conn::OnCloseCb(uv_handle_t* h) {
  Conn* c = static_cast<Conn*>(h->data);
  if (!c) {
    delete reinterpret_cast<uv_tcp_t*>(h);
    return;
  }
  c->handleClosed_ = true;
  c->io_->liveConns--;
  // What the owner writes to other connections in answer (a pooled session telling its client
  // the server went) is sent now, not with whatever I/O comes next on this thread.
  std::shared_ptr<ThreadIo> io = c->io_;
  c->events_->OnClosed(c);  // may delete c
  io->Flush();
}

std::string Conn::RemoteAddress(int* port) const {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  *port = 0;
  if (uv_tcp_getpeername(tcp_, reinterpret_cast<struct sockaddr*>(&ss), &len) != 0) return "";
  char name[64] = {0};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<struct sockaddr_in*>(&ss);
    uv_ip4_name(a, name, sizeof name);
    *port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<struct sockaddr_in6*>(&ss);
    uv_ip6_name(a, name, sizeof name);
    *port = ntohs(a->sin6_port);
  }
  return name;
}

std::string Conn::TlsVersion() const { return ssl_ ? SSL_get_version(ssl_) : ""; }

std::string Conn::TlsCipher() const {
  if (!ssl_) return "";
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl_);
  return c ? SSL_CIPHER_get_name(c) : "";
}

std::string Conn::TlsAlpn() const {
  if (!ssl_) return "";
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return p ? std::string(reinterpret_cast<const char*>(p), n) : "";
}

std::string Conn::TlsServerName() const {
  if (!ssl_) return "";
  const char* n = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return n ? n : "";
}

std::vector<unsigned char> Conn::ServerEndPoint() const {
  std::vector<unsigned char> out;
  if (!ssl_ || server_) return out;
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (!cert) return out;
  int mdNid = NID_undef, pkNid = NID_undef;
  if (OBJ_find_sigid_algs(X509_get_signature_nid(cert), &mdNid, &pkNid) == 1) {
    // RFC 5929 4.1: MD5 and SHA-1 are replaced by SHA-256; signatures without a digest
    // (Ed25519) have no defined end-point hash, as in PostgreSQL.
    if (mdNid == NID_md5 || mdNid == NID_sha1) mdNid = NID_sha256;
    const EVP_MD* md = mdNid == NID_undef ? nullptr : EVP_get_digestbynid(mdNid);
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (md && X509_digest(cert, md, buf, &n) == 1) out.assign(buf, buf + n);
  }
  X509_free(cert);
  ERR_clear_error();
  return out;
}

}  // namespace vg
