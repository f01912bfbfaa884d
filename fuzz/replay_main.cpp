// fuzz/replay_main.cpp — runs a fuzz target over files instead of under libFuzzer.
//
//   fuzz_host_replay fuzz/corpus/host fuzz/regressions/host [more files or dirs...]
//
// Every regular file of each directory (sorted by name; a directory that does not
// exist is skipped, an empty run is an error) goes through LLVMFuzzerTestOneInput once.
// A violated property or a crash aborts, so the CTest test fails.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz.hpp"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg(argv[i]);
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      for (const auto& entry : fs::directory_iterator(arg)) {
        if (entry.is_regular_file()) inputs.push_back(entry.path());
      }
    } else if (fs::is_regular_file(arg, ec)) {
      inputs.push_back(arg);
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::cerr << "no inputs to replay\n";
    return 1;
  }
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (!in.good() && !in.eof()) {
      std::cerr << "cannot read " << path << "\n";
      return 1;
    }
    std::cerr << "replaying " << path.string() << " (" << bytes.size() << " bytes)\n";
    // A copy of exactly the input's size, as libFuzzer passes it, so that a read past
    // the end is caught here too under ASan.
    std::vector<std::uint8_t> data(bytes.begin(), bytes.end());
    LLVMFuzzerTestOneInput(data.data(), data.size());
  }
  std::cout << "replayed " << inputs.size() << " inputs\n";
  return 0;
}
