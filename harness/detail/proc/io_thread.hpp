// Private: the one long-lived harness thread.
//
// It runs an asio io_context that drains every child's stdout/stderr and reads each
// supervisor's messages (exits, daemons followed). Spawning does not happen here: any
// thread may start a server (the supervisor watches the runner process, not a thread).
//
// The thread and its io_context are created on first use and never destroyed (they
// die with the process), so no static destructor can race a running handler. After a
// fork() without exec (e.g. a gtest death test) the child process gets a fresh one.
#pragma once

#include <boost/asio/io_context.hpp>

#include <functional>
#include <future>
#include <string>
#include <type_traits>

namespace harness::detail {

class io_thread {
 public:
  // The instance of this process (created on first use). Throws std::system_error when
  // the thread cannot be started (EAGAIN under RLIMIT_NPROC); a later call tries again.
  static io_thread& get();

  boost::asio::io_context& context() { return ctx_; }
  [[nodiscard]] bool on_this_thread() const;

  // Runs fn on the harness thread and returns its result; runs it inline when already
  // on that thread.
  template <class F>
  auto run(F&& fn) -> std::invoke_result_t<F&> {
    using R = std::invoke_result_t<F&>;
    if (on_this_thread()) return fn();
    std::packaged_task<R()> task(std::forward<F>(fn));
    auto fut = task.get_future();
    post([&task] { task(); });
    return fut.get();
  }

  void post(std::function<void()> fn);

  // A token unique to this runner process ("<pid>-<random hex>"); session markers of
  // this runner start with it.
  [[nodiscard]] const std::string& runner_token() const { return token_; }

  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;

 private:
  io_thread();
  boost::asio::io_context ctx_;
  std::string token_;
  struct impl;
  impl* impl_;
};

}  // namespace harness::detail
