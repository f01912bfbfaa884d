// harness-keeper — keeps one named shared server up for the processes that hold it
// (see harness/detail/shared/keeper.hpp).
#include "harness/detail/shared/keeper.hpp"

int main(int argc, char** argv) { return harness::detail::keeper_main(argc, argv); }
