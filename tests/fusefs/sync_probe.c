/* sync_probe DIR: the calls a careful program makes to store a file durably, each one checked.
 *
 * In DIR (which must exist) it makes a directory "probe", and in it writes a file the way
 * databases and editors do: create f.tmp, write, fdatasync, fsync, overwrite a range, fdatasync,
 * fsync the directory, rename f.tmp to f, fsync the directory, reopen and verify every byte,
 * fsync through a read-only descriptor, extend with ftruncate and fsync, unlink a scratch file
 * and fsync the directory, fsync DIR itself, and close everything.
 *
 * Every return value is checked: the first failure prints the call, the path and the errno and
 * exits 1 (2 if the errno was ENOSYS: fsync, fdatasync and fsync on a directory must never be
 * "not implemented"). Success prints "sync_probe: ok, N calls" and exits 0.
 *
 * A C program on purpose: nothing between it and the system calls. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { kSize = 200000, kPatchOffset = 70000, kPatchSize = 5000, kGrowTo = 300000 };

static int calls;

static void Check(long result, const char* call, const char* path) {
  ++calls;
  if (result >= 0) return;
  const int e = errno;
  fprintf(stderr, "sync_probe: %s(%s) failed: %s (errno %d%s)\n", call, path, strerror(e), e,
          e == ENOSYS ? ", ENOSYS: the call is not implemented" : "");
  exit(e == ENOSYS ? 2 : 1);
}

static void Fail(const char* what, const char* path) {
  fprintf(stderr, "sync_probe: %s: %s\n", path, what);
  exit(1);
}

static unsigned char Expected(size_t i) {
  if (i >= kPatchOffset && i < kPatchOffset + kPatchSize) return (unsigned char)(0xA5 ^ (i & 0x3F));
  if (i >= kSize) return 0; /* the hole ftruncate adds */
  return (unsigned char)((i * 131) >> 3);
}

static void WriteAll(int fd, const unsigned char* buf, size_t n, off_t off, const char* path) {
  while (n > 0) {
    const ssize_t w = pwrite(fd, buf, n, off);
    Check(w, "pwrite", path);
    if (w == 0) Fail("pwrite wrote 0 bytes", path);
    buf += w;
    n -= (size_t)w;
    off += w;
  }
}

static void VerifyFile(int fd, size_t size, const char* path) {
  struct stat st;
  Check(fstat(fd, &st), "fstat", path);
  if ((size_t)st.st_size != size) {
    fprintf(stderr, "sync_probe: %s: size %lld, expected %zu\n", path, (long long)st.st_size, size);
    exit(1);
  }
  unsigned char* buf = malloc(size);
  if (buf == NULL) Fail("out of memory", path);
  size_t got = 0;
  while (got < size) {
    const ssize_t r = pread(fd, buf + got, size - got, (off_t)got);
    Check(r, "pread", path);
    if (r == 0) Fail("unexpected end of file", path);
    got += (size_t)r;
  }
  for (size_t i = 0; i < size; ++i) {
    if (buf[i] != Expected(i)) {
      fprintf(stderr, "sync_probe: %s: byte %zu is 0x%02x, expected 0x%02x\n", path, i, buf[i],
              Expected(i));
      exit(1);
    }
  }
  free(buf);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: sync_probe DIR\n");
    return 64;
  }
  char dir[4096], tmp[4200], final_path[4200], scratch[4200];
  snprintf(dir, sizeof dir, "%s/probe", argv[1]);
  snprintf(tmp, sizeof tmp, "%s/f.tmp", dir);
  snprintf(final_path, sizeof final_path, "%s/f", dir);
  snprintf(scratch, sizeof scratch, "%s/scratch", dir);

  Check(mkdir(dir, 0755), "mkdir", dir);
  const int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  Check(dfd, "open(O_DIRECTORY)", dir);

  unsigned char* data = malloc(kSize);
  if (data == NULL) Fail("out of memory", tmp);
  for (size_t i = 0; i < kSize; ++i) data[i] = (unsigned char)((i * 131) >> 3);

  int fd = openat(dfd, "f.tmp", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
  Check(fd, "openat(O_CREAT|O_EXCL)", tmp);
  WriteAll(fd, data, kSize, 0, tmp);
  Check(fdatasync(fd), "fdatasync", tmp);
  Check(fsync(fd), "fsync", tmp);
  for (size_t i = kPatchOffset; i < kPatchOffset + kPatchSize; ++i) data[i] = Expected(i);
  WriteAll(fd, data + kPatchOffset, kPatchSize, kPatchOffset, tmp);
  Check(fdatasync(fd), "fdatasync", tmp);
  Check(close(fd), "close", tmp);
  Check(fsync(dfd), "fsync(directory)", dir);

  Check(renameat(dfd, "f.tmp", dfd, "f"), "renameat", tmp);
  Check(fsync(dfd), "fsync(directory)", dir);

  fd = open(final_path, O_RDONLY | O_CLOEXEC);
  Check(fd, "open(O_RDONLY)", final_path);
  VerifyFile(fd, kSize, final_path);
  Check(fsync(fd), "fsync(read-only fd)", final_path);
  Check(fdatasync(fd), "fdatasync(read-only fd)", final_path);
  Check(close(fd), "close", final_path);

  fd = open(final_path, O_RDWR | O_CLOEXEC);
  Check(fd, "open(O_RDWR)", final_path);
  Check(ftruncate(fd, kGrowTo), "ftruncate", final_path);
  Check(fsync(fd), "fsync", final_path);
  VerifyFile(fd, kGrowTo, final_path);
  Check(close(fd), "close", final_path);

  fd = open(scratch, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  Check(fd, "open(O_CREAT|O_EXCL)", scratch);
  Check(write(fd, "x", 1), "write", scratch);
  Check(fsync(fd), "fsync", scratch);
  Check(close(fd), "close", scratch);
  Check(unlink(scratch), "unlink", scratch);
  Check(fsync(dfd), "fsync(directory)", dir);
  Check(fdatasync(dfd), "fdatasync(directory)", dir);
  Check(close(dfd), "close", dir);

  const int pfd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  Check(pfd, "open(O_DIRECTORY)", argv[1]);
  Check(fsync(pfd), "fsync(directory)", argv[1]);
  Check(close(pfd), "close", argv[1]);

  if (access(tmp, F_OK) == 0) Fail("still exists after the rename", tmp);
  if (access(scratch, F_OK) == 0) Fail("still exists after unlink", scratch);
  free(data);
  printf("sync_probe: ok, %d calls\n", calls);
  return 0;
}
