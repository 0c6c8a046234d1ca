#include "l4/tcp_proxy.h"
