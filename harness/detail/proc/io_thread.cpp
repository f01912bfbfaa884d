#include "harness/detail/proc/io_thread.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace harness::detail {

struct io_thread::impl {
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard;
  std::thread::id id;
  std::thread thread;
};

namespace {

std::mutex instance_mutex;
io_thread* instance = nullptr;  // never deleted: it dies with the process
pid_t instance_pid = 0;

std::string make_token() {
  std::random_device rd;
  std::uint64_t r = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%d-%012llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(r & 0xffffffffffffULL));
  return buf;
}

}  // namespace

io_thread& io_thread::get() {
  const pid_t me = ::getpid();
  std::lock_guard lock(instance_mutex);
  // After fork() without exec the old thread does not exist in this process: start a
  // new one (the old object is deliberately leaked).
  if (instance == nullptr || instance_pid != me) {
    instance = new io_thread();
    instance_pid = me;
  }
  return *instance;
}

io_thread::io_thread()
    : ctx_(1), token_(make_token()), impl_(new impl{boost::asio::make_work_guard(ctx_), {}, {}}) {
  // The harness thread must not take signals meant for the runner (SIGINT handlers,
  // sigwait loops): block them all while it runs.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  // Restored on every way out: std::thread throws std::system_error when no thread can
  // be had (EAGAIN), and the caller must not keep every signal blocked.
  struct restore_mask {
    const sigset_t& mask;
    ~restore_mask() { pthread_sigmask(SIG_SETMASK, &mask, nullptr); }
  } restore{old};
  std::unique_ptr<impl> owned(impl_);
  std::promise<std::thread::id> started;
  auto started_future = started.get_future();
  impl_->thread = std::thread([this, &started] {
    started.set_value(std::this_thread::get_id());
    for (;;) {
      try {
        ctx_.run();
        return;
      } catch (const std::exception& e) {
        // A handler must never take the harness thread down; report and go on.
        std::fprintf(stderr, "serve-harness: internal error on the I/O thread: %s\n", e.what());
      }
    }
  });
  owned.release();
  impl_->id = started_future.get();
  impl_->thread.detach();
}

bool io_thread::on_this_thread() const { return std::this_thread::get_id() == impl_->id; }

void io_thread::post(std::function<void()> fn) { boost::asio::post(ctx_, std::move(fn)); }

}  // namespace harness::detail
