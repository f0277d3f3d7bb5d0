// The admin API's workloads, against a real troupe-node (this build's) with
// the counter plugin and a bearer token:
//
//   admin_send_rps          wrk, 8 keep-alive connections, POST
//                           /v1/actors/c/send with a 41-byte JSON body
//                           ({"type":"counter.Add","message":{"by":1}}),
//                           for 5 s: requests per second.
//   admin_healthz_p99_under_slowloris
//                           1,000 idle keep-alive clients (each made one
//                           request) and 100 slowloris senders (a header
//                           line every second, never the end) held open,
//                           then 2,000 GET /healthz, each on a new
//                           connection: the 99th percentile, in ms.
#include "admin_bench.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using clock_type = std::chrono::steady_clock;
constexpr const char* token = "bench-token-0123456789";

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(std::string("connect: ") + std::strerror(e));
  }
  const int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  return fd;
}

void send_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error("send failed");
    done += static_cast<std::size_t>(n);
  }
}

// One response (headers, then a Content-Length body); returns its status.
int read_response(int fd) {
  std::string in;
  char buf[4096];
  std::size_t head_end;
  while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return -1;
    in.append(buf, static_cast<std::size_t>(n));
  }
  std::size_t length = 0;
  for (const char* key : {"Content-Length: ", "content-length: "})
    if (auto at = in.find(key); at != std::string::npos && at < head_end)
      length = std::strtoul(in.c_str() + at + std::strlen(key), nullptr, 10);
  while (in.size() < head_end + 4 + length) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<std::size_t>(n));
  }
  return in.size() > 12 ? std::atoi(in.c_str() + 9) : -1;
}

int request(int port, const std::string& method, const std::string& path, const std::string& body) {
  const int fd = connect_to(port);
  send_all(fd, method + " " + path + " HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
                   "Authorization: Bearer " + token + "\r\nContent-Type: application/json\r\n"
                   "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  const int status = read_response(fd);
  ::close(fd);
  return status;
}

// troupe-node in a folder of its own; stopped (SIGTERM, then waited for) on
// destruction.
class node_process {
 public:
  node_process() {
    char dir_template[] = "/tmp/troupe-admin-bench-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = dir_template;
    std::filesystem::create_directories(dir_ + "/plugins");
    std::filesystem::copy_file(TROUPE_COUNTER_PLUGIN, dir_ + "/plugins/counter.so");
    std::ofstream(dir_ + "/admin.token") << token << "\n";
    // A port found free here: at log level warning the node does not say
    // where it listens.
    port_ = free_port();
    std::ofstream(dir_ + "/node.yaml")
        << "node: { name: bench, cluster: bench }\n"
        << "plugins: { dir: " << dir_ << "/plugins, load: [counter] }\n"
        << "admin: { listen: 127.0.0.1:" << port_ << ", token_file: " << dir_ << "/admin.token }\n"
        << "metrics: { listen: 127.0.0.1:0 }\n"
        << "log: { level: warning }\n";
    const std::string config = dir_ + "/node.yaml";
    const char* argv[] = {TROUPE_NODE_BIN, "--config", config.c_str(), nullptr};
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 2, (dir_ + "/node.log").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = ::posix_spawn(&pid_, TROUPE_NODE_BIN, &files, nullptr,
                                 const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&files);
    if (rc != 0) throw std::runtime_error(std::string("cannot start troupe-node: ") + std::strerror(rc));
    // Ready when /readyz answers 200.
    const auto deadline = clock_type::now() + std::chrono::seconds(20);
    while (clock_type::now() < deadline) {
      try {
        if (request(port_, "GET", "/readyz", "") == 200) return;
      } catch (const std::exception&) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    throw std::runtime_error("troupe-node did not get ready; see " + dir_ + "/node.log");
  }
  ~node_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  node_process(const node_process&) = delete;
  node_process& operator=(const node_process&) = delete;

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }

 private:
  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }
  std::string dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

void raise_file_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

}  // namespace

double admin_send_rps() {
  node_process node;
  if (request(node.port(), "POST", "/v1/actors", R"({"kind": "counter", "name": "c"})") != 201)
    throw std::runtime_error("admin_send_rps: the counter did not spawn");
  const std::string script = node.dir() + "/send.lua";
  std::ofstream(script) << "wrk.method = \"POST\"\n"
                        << "wrk.body = '{\"type\":\"counter.Add\",\"message\":{\"by\":1}}'\n"
                        << "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
                        << "wrk.headers[\"Authorization\"] = \"Bearer " << token << "\"\n";
  const std::string url = "http://127.0.0.1:" + std::to_string(node.port()) + "/v1/actors/c/send";
  const std::string cmd = "wrk -t2 -c8 -d5s -s " + script + " " + url + " 2>&1";
  FILE* out = ::popen(cmd.c_str(), "r");
  if (out == nullptr) throw std::runtime_error("admin_send_rps: cannot run wrk");
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof buf, out) != nullptr) text += buf;
  const int rc = ::pclose(out);
  const auto rate_at = text.find("Requests/sec:");
  if (rc != 0 || rate_at == std::string::npos)
    throw std::runtime_error("admin_send_rps: wrk failed (is it installed?):\n" + text);
  if (text.find("Non-2xx") != std::string::npos)
    throw std::runtime_error("admin_send_rps: some sends were not accepted:\n" + text);
  return std::strtod(text.c_str() + rate_at + std::strlen("Requests/sec:"), nullptr);
}

double admin_healthz_p99_under_slowloris() {
  raise_file_limit();
  node_process node;
  std::vector<int> idle, loris;
  for (int i = 0; i < 1000; ++i) {
    const int fd = connect_to(node.port());
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n");
    if (read_response(fd) != 200) throw std::runtime_error("a keep-alive client was not served");
    idle.push_back(fd);
  }
  for (int i = 0; i < 100; ++i) {
    const int fd = connect_to(node.port());
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: bench\r\n");
    loris.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    while (!stop.load()) {
      for (int fd : loris) ::send(fd, "X-a: b\r\n", 8, MSG_NOSIGNAL);
      for (int i = 0; i < 100 && !stop.load(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  std::vector<double> ms;
  for (int i = 0; i < 2000; ++i) {
    const auto t0 = clock_type::now();
    const int status = request(node.port(), "GET", "/healthz", "");
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    if (status != 200) {
      stop = true;
      trickle.join();
      throw std::runtime_error("/healthz answered " + std::to_string(status));
    }
  }
  stop = true;
  trickle.join();
  for (int fd : idle) ::close(fd);
  for (int fd : loris) ::close(fd);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() * 99 / 100];
}
