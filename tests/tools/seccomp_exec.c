// seccomp_exec ERRNO PROGRAM [ARGS...]: runs PROGRAM under a seccomp filter
// that makes io_uring_setup, io_uring_enter and io_uring_register fail with
// ERRNO, as the default profiles of Docker, containerd and CRI-O do (EPERM)
// or as a filter that hides unknown system calls does (ENOSYS). A real kernel
// filter, for io_uring_refused_test.sh; everything else is allowed.
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: seccomp_exec ERRNO PROGRAM [ARGS...]\n");
    return 2;
  }
  const unsigned err = (unsigned)atoi(argv[1]) & SECCOMP_RET_DATA;
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof(filter) / sizeof(filter[0])), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("seccomp_exec: installing the filter");
    return 1;
  }
  execvp(argv[2], argv + 2);
  perror("seccomp_exec: exec");
  return 127;
}
