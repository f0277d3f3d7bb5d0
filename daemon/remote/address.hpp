#pragma once
// "host:port" and "[v6]:port" addresses, as the config and PIDs write them.
#include <string>

#include <sys/socket.h>

namespace troupe::remote {

// Splits an address into host and port; false with `error` set if malformed.
bool split_address(const std::string& address, std::string& host, std::string& port,
                   std::string& error);
// Parses an IP-literal address into a socket address.
bool parse_ip_address(const std::string& address, sockaddr_storage& out, std::string& error);

}  // namespace troupe::remote
