#include <cstdio>
#include "app/version.h"
int main() { std::fputs(fulcrum::app::version_text().c_str(), stdout); }
