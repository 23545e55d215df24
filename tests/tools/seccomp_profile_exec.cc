// seccomp_profile_exec PROFILE.json PROGRAM [ARGS...]: runs PROGRAM under the
// seccomp filter a container runtime would build from an OCI/Docker seccomp
// profile (defaultAction, defaultErrnoRet, syscalls[].names/action/errnoRet),
// compiled by libseccomp as runc and crun do. Names this architecture does not
// have are skipped, as runtimes do.
// seccomp_profile_exec --check PROFILE.json: prints every name that libseccomp
// knows on none of x86_64, aarch64 (a typo) and exits 1 if there is one.
// Only what derpd's profile uses is supported: ALLOW, ERRNO and LOG actions
// without argument conditions; anything else is refused, not ignored.
#include <seccomp.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace {

bool action(const std::string& name, int errnoRet, uint32_t& out) {
  if (name == "SCMP_ACT_ALLOW")
    out = SCMP_ACT_ALLOW;
  else if (name == "SCMP_ACT_ERRNO")
    out = SCMP_ACT_ERRNO(static_cast<uint32_t>(errnoRet));
  else if (name == "SCMP_ACT_LOG")
    out = SCMP_ACT_LOG;
  else
    return false;
  return true;
}

int fail(const char* what) {
  std::fprintf(stderr, "seccomp_profile_exec: %s\n", what);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const bool check = argc == 3 && std::strcmp(argv[1], "--check") == 0;
  if (!check && argc < 3) {
    return fail("usage: seccomp_profile_exec PROFILE.json PROGRAM [ARGS...] | --check PROFILE");
  }
  std::ifstream in(argv[check ? 2 : 1]);
  nlohmann::json profile = nlohmann::json::parse(in, nullptr, false);
  if (profile.is_discarded() || !profile.is_object()) return fail("the profile is not JSON");
  if (check) {
    int unknown = 0;
    for (const auto& rule : profile.value("syscalls", nlohmann::json::array())) {
      for (const auto& n : rule.at("names")) {
        const std::string name = n.get<std::string>();
        if (seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name.c_str()) == __NR_SCMP_ERROR &&
            seccomp_syscall_resolve_name_arch(SCMP_ARCH_AARCH64, name.c_str()) == __NR_SCMP_ERROR) {
          std::printf("unknown system call: %s\n", name.c_str());
          unknown++;
        }
      }
    }
    return unknown == 0 ? 0 : 1;
  }
  uint32_t defaultAction = 0;
  if (!action(profile.value("defaultAction", ""), profile.value("defaultErrnoRet", EPERM),
              defaultAction)) {
    return fail("unsupported defaultAction");
  }
  scmp_filter_ctx ctx = seccomp_init(defaultAction);
  if (ctx == nullptr) return fail("seccomp_init failed");
  for (const auto& rule : profile.value("syscalls", nlohmann::json::array())) {
    if (rule.contains("args") && !rule["args"].empty()) return fail("argument conditions");
    uint32_t act = 0;
    if (!action(rule.value("action", ""), rule.value("errnoRet", EPERM), act)) {
      return fail("unsupported action");
    }
    for (const auto& n : rule.at("names")) {
      const int nr = seccomp_syscall_resolve_name(n.get<std::string>().c_str());
      if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
      if (act == defaultAction) continue;
      if (seccomp_rule_add(ctx, act, nr, 0) != 0) return fail("seccomp_rule_add failed");
    }
  }
  if (seccomp_load(ctx) != 0) return fail("seccomp_load failed");
  seccomp_release(ctx);
  execvp(argv[2], argv + 2);
  std::perror("seccomp_profile_exec: exec");
  return 127;
}
