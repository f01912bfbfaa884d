// harness-keeper — keeps one named shared server up for the processes that hold it
// (see keeper.hpp).
#include "keeper.hpp"

int main(int argc, char** argv) { return harness::detail::keeper_main(argc, argv); }
