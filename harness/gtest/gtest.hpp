// harness/gtest/gtest.hpp — serve-harness for GoogleTest and GoogleMock, in one include.
//
//   #include "harness/gtest/gtest.hpp"
//   using namespace harness::gtest;
//
//   class ApiTest : public server_test {
//    protected:
//     void SetUp() override {
//       api_ = start_server({.command = {"my-api", "--listen=127.0.0.1:{port}"},
//                            .ready = {.probes = {harness::probe::http("/health")}}});
//       if (api_ == nullptr) return;          // failed (or skipped) with the full reason
//     }
//     harness::session* api_ = nullptr;
//   };
//
//   TEST_F(ApiTest, ShutsDownCleanly) {
//     EXPECT_THAT(*api_, LogContains("listening"));
//     EXPECT_THAT(api_->stop(), ExitedWith(0));
//   }
//
// and link harness::gtest_main (GoogleMock's init, SIGPIPE ignored, the listener
// installed) or harness::gtest with your own main() calling install_listener().
//
// The parts:
//   fixture.hpp   server_test (per test), shared_server (per suite), server_environment
//                 (per program); start failures become FAIL / GTEST_SKIP, never exceptions
//   listener.hpp  on a failed test, print its servers (summary, stderr tail, log path);
//                 record harness.port / harness.attempts / harness.ready_ms properties
//   matchers.hpp  ExitedWith, KilledBy, LogContains, IsOk, ErrorIs
//   printers.hpp  PrintTo for exit_status, failure, error, errc, result<T>, attempt,
//                 session, process, output
//
// Timeouts: this layer has none of its own. Every wait it causes — readiness, stop
// grace, kill wait — uses the durations of your server_spec, which the core multiplies
// by HARNESS_TIMEOUT_SCALE (harness/timeouts.hpp) when it uses them; the matchers do not
// wait at all. So `HARNESS_TIMEOUT_SCALE=4 ctest` slows every deadline down together
// for sanitizer and valgrind builds. Durations you pass to the core yourself (e.g.
// output().wait_for_line(..., 5s)) are scaled the same way.
//
// Nothing below this layer knows GoogleTest: the core never asserts; assertions and
// skips happen only here, in SetUp / SetUpTestSuite / at test start.
//
// Gotchas: see each header. The most common: check the pointer start_server() returns
// and return from SetUp when it is nullptr.
#pragma once

#include "harness/gtest/fixture.hpp"    // IWYU pragma: export
#include "harness/gtest/listener.hpp"   // IWYU pragma: export
#include "harness/gtest/matchers.hpp"   // IWYU pragma: export
#include "harness/gtest/printers.hpp"   // IWYU pragma: export
