#include "remote/address.hpp"

#include <uv.h>

namespace troupe::remote {

bool split_address(const std::string& address, std::string& host, std::string& port,
                   std::string& error) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    error = "expected host:port";
    return false;
  }
  host = address.substr(0, colon);
  port = address.substr(colon + 1);
  if (host.front() == '[') {
    if (host.back() != ']') {
      error = "expected [v6-address]:port";
      return false;
    }
    host = host.substr(1, host.size() - 2);
  }
  for (char c : port)
    if (c < '0' || c > '9') {
      error = "the port '" + port + "' is not a number";
      return false;
    }
  return true;
}

bool parse_ip_address(const std::string& address, sockaddr_storage& out, std::string& error) {
  std::string host, port;
  if (!split_address(address, host, port, error)) return false;
  const int p = std::stoi(port);
  if (uv_ip4_addr(host.c_str(), p, reinterpret_cast<sockaddr_in*>(&out)) == 0) return true;
  if (uv_ip6_addr(host.c_str(), p, reinterpret_cast<sockaddr_in6*>(&out)) == 0) return true;
  error = "'" + host + "' is not an IP address";
  return false;
}

}  // namespace troupe::remote
