// The command line: run, check, demo, version. Main thread.
#pragma once

namespace fulcrum::app {
int main_cli(int argc, char** argv);
}
