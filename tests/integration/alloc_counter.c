// LD_PRELOAD allocation counter for derpd's zero-allocation test.
//
// Interposes the C allocation entry points (C++ operator new ends in malloc),
// forwards to glibc's __libc_* implementations and counts allocation calls
// (not frees) into a uint64 at offset 0 of a MAP_SHARED mapping of the file
// named by DERPD_ALLOC_COUNTER_FILE, which the test creates (4096 bytes) and
// reads while the process runs. Without the variable nothing is counted.
//
// The mapping is made in a constructor; allocations before it (the dynamic
// loader, libc start-up) are not counted, and neither getenv, open nor mmap
// allocate, so there is no recursion.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t n, size_t size);
extern void* __libc_realloc(void* p, size_t size);
extern void __libc_free(void* p);
extern void* __libc_memalign(size_t alignment, size_t size);
extern void* __libc_valloc(size_t size);
extern void* __libc_pvalloc(size_t size);

static uint64_t* g_counter;

__attribute__((constructor)) static void allocCounterInit(void) {
  const char* path = getenv("DERPD_ALLOC_COUNTER_FILE");
  if (path == NULL) return;
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  void* p = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p != MAP_FAILED) __atomic_store_n(&g_counter, (uint64_t*)p, __ATOMIC_RELEASE);
}

static inline void countOne(void) {
  uint64_t* c = __atomic_load_n(&g_counter, __ATOMIC_RELAXED);
  if (c != NULL) __atomic_fetch_add(c, 1, __ATOMIC_RELAXED);
}

void* malloc(size_t size) {
  countOne();
  return __libc_malloc(size);
}

void* calloc(size_t n, size_t size) {
  countOne();
  return __libc_calloc(n, size);
}

void* realloc(void* p, size_t size) {
  countOne();
  return __libc_realloc(p, size);
}

void free(void* p) { __libc_free(p); }

void* memalign(size_t alignment, size_t size) {
  countOne();
  return __libc_memalign(alignment, size);
}

void* aligned_alloc(size_t alignment, size_t size) {
  countOne();
  return __libc_memalign(alignment, size);
}

int posix_memalign(void** out, size_t alignment, size_t size) {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  countOne();
  void* p = __libc_memalign(alignment, size);
  if (p == NULL && size != 0) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(size_t size) {
  countOne();
  return __libc_valloc(size);
}

void* pvalloc(size_t size) {
  countOne();
  return __libc_pvalloc(size);
}
