// tls::ServerContext: certificates chosen by SNI (exact names, one-label wildcards, the first as
// default), and check_cert's reasons. Certificates are made with the openssl CLI in a temp folder.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tls/tls.h"

namespace fulcrum::tls {
namespace {

std::string cn_of(const ServerContext::Cert& c) {
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(SSL_CTX_get0_certificate(c.ctx.get())), NID_commonName, cn,
                            sizeof(cn));
  return cn;
}

class ServerContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("fulcrum-tls-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    make("a", "/CN=a.test", "DNS:a.test,DNS:www.a.test");
    make("b", "/CN=b.test", "DNS:*.b.test,DNS:b.test");
    make("c", "/CN=c.test", "");  // no SAN: the CN names it
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void make(const std::string& name, const std::string& subj, const std::string& san) {
    std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj " +
                      subj + (san.empty() ? "" : " -addext subjectAltName=" + san) + " -keyout " +
                      (dir_ / (name + ".key")).string() + " -out " + (dir_ / (name + ".pem")).string() +
                      " 2>/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }
  config::TlsCert cert(const std::string& c, const std::string& k) {
    config::TlsCert t;
    t.cert = (dir_ / (c + ".pem")).string();
    t.key = (dir_ / (k + ".key")).string();
    return t;
  }
  std::filesystem::path dir_;
};

TEST_F(ServerContextTest, SniSelectsExactThenWildcardElseFirst) {
  auto ctx = ServerContext::build("t", {cert("a", "a"), cert("b", "b"), cert("c", "c")}, true);
  ASSERT_TRUE(ctx) << ctx.error().message;
  const ServerContext& sc = **ctx;
  EXPECT_EQ(cn_of(sc.select("a.test")), "a.test");
  EXPECT_EQ(cn_of(sc.select("WWW.A.TEST")), "a.test");  // names are case-insensitive
  EXPECT_EQ(cn_of(sc.select("b.test")), "b.test");
  EXPECT_EQ(cn_of(sc.select("x.b.test")), "b.test");
  EXPECT_EQ(cn_of(sc.select("x.b.test.")), "b.test");    // a trailing dot is the same name
  EXPECT_EQ(cn_of(sc.select("y.x.b.test")), "a.test");   // a wildcard covers one label only
  EXPECT_EQ(cn_of(sc.select(".b.test")), "a.test");
  EXPECT_EQ(cn_of(sc.select("c.test")), "c.test");       // CN when there is no SAN
  EXPECT_EQ(cn_of(sc.select("unknown.example")), "a.test");
  EXPECT_EQ(cn_of(sc.select("")), "a.test");
}

TEST_F(ServerContextTest, CheckCertNamesTheFileAndTheReason) {
  EXPECT_FALSE(check_cert(cert("a", "a")));
  auto missing = check_cert(cert("a", "nope"));
  ASSERT_TRUE(missing);
  EXPECT_NE(missing->find("nope.key"), std::string::npos) << *missing;
  EXPECT_NE(missing->find("No such file"), std::string::npos) << *missing;
  auto mismatch = check_cert(cert("a", "b"));
  ASSERT_TRUE(mismatch);
  EXPECT_NE(mismatch->find("b.key"), std::string::npos) << *mismatch;
  EXPECT_NE(mismatch->find("mismatch"), std::string::npos) << *mismatch;
  auto built = ServerContext::build("t", {cert("a", "b")}, true);
  EXPECT_FALSE(built);
}

}  // namespace
}  // namespace fulcrum::tls
