// A fake leg (net/leg.h) for driving a Pump without sockets: it records what was written to
// it and how it was closed; its close event is delivered by the test (Pump::OnClosed).
#pragma once
#include <cstdlib>
#include <string>

#include "net/leg.h"

namespace vg {
namespace test {

struct FakeLeg final : Leg {
  std::string written;
  bool closing = false;
  bool closeDelivered = false;
  CloseReason reason = CloseReason::None;
  std::string detail;
  bool released = false;  // given back by a pooled session: the pump must not write to it
  bool Write(const char* data, size_t len) override {
    if (released) abort();
    if (closing) return false;
    written.append(data, len);
    return true;
  }
  bool reading = false;
  void PauseRead() override { reading = false; }
  void ResumeRead() override { reading = true; }
  void Close(CloseReason r, const std::string& d) override { End(r, d); }
  void Destroy(CloseReason r, const std::string& d) override { End(r, d); }
  bool closed() const override { return closing; }
  size_t queuedBytes() const override { return 0; }
  CloseReason closeReason() const override { return reason; }
  const std::string& closeDetail() const override { return detail; }
  void SetLowWater(size_t) override {}
  void SetMaxTlsRecord(size_t) override {}
  uint64_t Now() const override { return 1; }
  void End(CloseReason r, const std::string& d) {
    if (closing) return;
    closing = true;
    reason = r;
    detail = d;
  }
};

}  // namespace test
}  // namespace vg
