// The keeper of a named shared server: the harness-keeper program (tools/keeper/).
//
// Started by the first caller (named_server.cpp) as `harness-keeper CONTROL_FD`. It
// forks once (the caller reaps the first process at once; the second is nobody's
// child but init's or a subreaper's), leaves the caller's session (setsid: a Ctrl-C
// meant for a test does not reach it; its holds say when it goes), reads the request —
// one JSON line: name, servers directory, spec, fingerprint, keep_warm_ms, the holder,
// reserve — from CONTROL_FD, takes the name's socket, runs the server as a session,
// answers "ok RECORD", "failed FAILURE" or "taken" on CONTROL_FD, and then serves the
// requests of named_common.hpp until it stops. The server runs under its own
// supervisor, whose runner is the keeper: a keeper that is killed takes the server's
// whole tree with it.
#pragma once

namespace harness::detail {

int keeper_main(int argc, char** argv);

}  // namespace harness::detail
