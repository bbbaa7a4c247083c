// Transaction pooling: whether a statement leaves something in the server session that
// outlives its transaction (a setting, a prepared statement, a LISTEN, a temporary table, a
// cursor WITH HOLD, a session advisory lock, ...). Such a statement pins the client to its
// server session for the rest of the client's session, so that the next client never sees
// that state and this one never loses it.
//
// Read lexically, as PostgreSQL's scanner splits text (comments, quoted strings, dollar
// quotes, quoted identifiers), statement by statement. Conservative: when the text might
// leave session state, it pins (a column named `temp` in a CREATE or SELECT pins too); what
// no text can show (a function that runs SET inside) is not caught, as in every pooler.
#pragma once
#include <cstddef>

namespace vg {

// The reason a statement pins (a short phrase for logs, metrics and recordings), or nullptr.
const char* SessionPinReason(const char* sql, size_t len);

}  // namespace vg
