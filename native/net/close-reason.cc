// Close reasons as JavaScript reads them (net/leg.h).
#include "net/leg.h"

namespace vg {

const char* CloseReasonName(CloseReason r) {
  switch (r) {
    case CloseReason::None: return "";
    case CloseReason::Closed: return "closed";
    case CloseReason::Eof: return "eof";
    case CloseReason::ReadError: return "read-error";
    case CloseReason::WriteError: return "write-error";
    case CloseReason::TlsError: return "tls-error";
    case CloseReason::TlsHandshake: return "tls-handshake";
    case CloseReason::AcceptFailed: return "accept-failed";
    case CloseReason::ConnectFailed: return "connect-failed";
    case CloseReason::PeerClosed: return "peer-closed";
    case CloseReason::ClientEof: return "client-eof";
    case CloseReason::UpstreamEof: return "upstream-eof";
    case CloseReason::ClientError: return "client-error";
    case CloseReason::UpstreamError: return "upstream-error";
    case CloseReason::ClientTerminate: return "client-terminate";
    case CloseReason::ProtocolError: return "protocol-error";
    case CloseReason::TokenExpired: return "token-expired";
    case CloseReason::UnreadableSetting: return "unreadable-setting";
    case CloseReason::PolicyRevoked: return "policy-revoked";
    case CloseReason::Shutdown: return "shutdown";
    case CloseReason::RecordingFailed: return "recording-failed";
  }
  return "unknown";
}

bool GatewayEndReasonFromName(const std::string& name, CloseReason* out) {
  for (CloseReason r : {CloseReason::PolicyRevoked, CloseReason::Shutdown, CloseReason::RecordingFailed, CloseReason::Closed}) {
    if (name == CloseReasonName(r)) {
      *out = r;
      return true;
    }
  }
  return false;
}

}  // namespace vg
