// ip_hash: the consistent hash of the client's IP address, through the HRW table of
// consistent_hash.h (a client keeps its server while others come and go). Built and used by one
// worker. A request without an IP client address (none should reach here; `check` requires one
// for ip_hash) falls back to smooth round robin rather than piling onto one server.
#include "lb/algorithms.h"
#include "lb/consistent_hash.h"

namespace fulcrum::lb {
namespace {

class IpHash final : public Balancer {
 public:
  IpHash(std::vector<Candidate> candidates, uint64_t seed)
      : table_(candidates), fallback_(make_round_robin(std::move(candidates), seed)) {}

  upstream::Server* pick(const PickContext& ctx) override {
    std::string_view ip = client_ip_key(ctx.client);
    if (ip.empty()) return fallback_->pick(ctx);
    return table_.pick(hash_bytes(ip), ctx);
  }

 private:
  HrwTable table_;
  std::unique_ptr<Balancer> fallback_;
};

}  // namespace

std::unique_ptr<Balancer> make_ip_hash(std::vector<Candidate> candidates, uint64_t seed) {
  drop_unweighted(candidates);
  return std::make_unique<IpHash>(std::move(candidates), seed);
}

}  // namespace fulcrum::lb
