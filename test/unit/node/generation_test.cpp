// The node's generation: new and higher at every start.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "node/generation.hpp"

using troupe::node::next_generation;

TEST_CASE("every start gets a higher generation, kept in the state directory", "[node]") {
  const auto dir = std::filesystem::temp_directory_path() / ("troupe-gen-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::uint64_t a = 0, b = 0, c = 0;
  std::string error;
  REQUIRE(next_generation(dir.string(), 1000, a, error));
  CHECK(a == 1000);
  // A clock that went back (or a start within the same millisecond) still
  // gives a higher one.
  REQUIRE(next_generation(dir.string(), 500, b, error));
  CHECK(b == 1001);
  REQUIRE(next_generation(dir.string(), 5000, c, error));
  CHECK(c == 5000);
  {
    std::ofstream(dir / "generation") << "garbage\n";
  }
  CHECK_FALSE(next_generation(dir.string(), 6000, c, error));
  CHECK(error.find("does not hold a generation") != std::string::npos);
  std::uint64_t none = 0;
  REQUIRE(next_generation("", 7000, none, error));
  CHECK(none == 7000);
  std::filesystem::remove_all(dir);
}
