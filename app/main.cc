// fulcrum: one load balancer for L4 and L7. See README.md and SPEC.md.
#include "app/cli.h"

int main(int argc, char** argv) { return fulcrum::app::main_cli(argc, argv); }
