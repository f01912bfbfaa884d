#include "harness/detail/session/http_probe.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

namespace harness::detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;

std::optional<http_answer> http_get(const net::address& at, const std::string& host_header,
                                    const std::string& path, std::chrono::milliseconds timeout,
                                    std::string* why) {
  asio::io_context ioc(1);
  beast::tcp_stream stream(ioc);
  asio::ip::tcp::endpoint ep;
  std::memcpy(ep.data(), at.get(), at.length);
  ep.resize(at.length);

  http::request<http::empty_body> req{http::verb::get, path.empty() ? "/" : path, 11};
  req.set(http::field::host, host_header);
  req.set(http::field::user_agent, "serve-harness readiness probe");
  req.set(http::field::connection, "close");

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  beast::error_code failed;
  bool done = false;

  // Asynchronous operations on a private io_context: the tcp_stream deadline covers
  // connect, write and read together (synchronous Beast calls ignore it).
  stream.expires_after(timeout);
  stream.async_connect(ep, [&](beast::error_code ec) {
    if (ec) {
      failed = ec;
      return;
    }
    http::async_write(stream, req, [&](beast::error_code wec, std::size_t) {
      if (wec) {
        failed = wec;
        return;
      }
      http::async_read(stream, buffer, parser, [&](beast::error_code rec, std::size_t) {
        if (rec) {
          failed = rec;
          return;
        }
        done = true;
      });
    });
  });
  ioc.run();
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  if (!done) {
    if (why != nullptr) *why = failed ? failed.message() : "no answer";
    return std::nullopt;
  }
  auto res = parser.release();
  return http_answer{static_cast<int>(res.result_int()), std::move(res.body())};
}

}  // namespace harness::detail
