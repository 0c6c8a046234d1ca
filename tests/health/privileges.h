// Test helpers that change a single thread's view of the system: run a function on a thread
// without CAP_NET_RAW (capabilities are per thread), or on a thread in a network namespace of
// its own (namespaces are per thread too) with loopback up. Threads created inside inherit it.
#pragma once
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

namespace fulcrum::health::testing {

// Runs fn on a thread whose effective capabilities lack CAP_NET_RAW. False if it could not drop.
inline bool without_net_raw(const std::function<void()>& fn) {
  bool dropped = false;
  std::thread t([&] {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capget, &hdr, data) != 0) return;
    data[CAP_NET_RAW / 32].effective &= ~(1u << (CAP_NET_RAW % 32));
    if (syscall(SYS_capset, &hdr, data) != 0) return;
    dropped = true;
    fn();
  });
  t.join();
  return dropped;
}

// Runs fn on a thread in a new network namespace whose loopback is up; `setup` gets a chance to
// write per-namespace sysctls first. False when namespaces are not available here.
inline bool in_new_netns(
    const std::function<void()>& fn, const std::function<void()>& setup = [] {}) {
  bool made = false;
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) != 0) return;
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return;
    ifreq ifr{};
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    bool up =
        ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
    ::close(s);
    if (!up) return;
    made = true;
    setup();
    fn();
  });
  t.join();
  return made;
}

inline bool write_sysctl(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  f << value;
  f.flush();
  return static_cast<bool>(f);
}

inline std::string read_sysctl(const std::string& path) {
  std::ifstream f(path);
  std::string v;
  std::getline(f, v);
  return v;
}

}  // namespace fulcrum::health::testing
