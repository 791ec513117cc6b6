/* The disk's limit for durable appends: pwrite + fdatasync cycles of a fixed size for a fixed
 * time, either appending to a growing file ("append"), overwriting a zero-filled 64 MiB region
 * in a cycle ("zeroed", what sturdy's preallocated segments do), or the same while a second
 * thread zero-fills as many fresh bytes of another file as the cycles write ("filling": what
 * keeping zero-filled space ahead of a log costs the disk). Prints
 * "<cycles per second> <p50 us> <p99 us>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* "filling": zeros written to a fresh file, 1 MiB at a time (direct where the platform has it),
 * made durable every 16 MiB, as fast as the writer writes its bytes. */
static _Atomic long long written, filled;
static atomic_int stop;
static int fill_fd;

static void *fill(void *arg) {
  (void)arg;
  const size_t piece = 1 << 20;
  void *zeros;
  if (posix_memalign(&zeros, 4096, piece)) return 0;
  memset(zeros, 0, piece);
  while (!stop) {
    if (filled >= written) { usleep(50); continue; }
    if (pwrite(fill_fd, zeros, piece, filled) != (ssize_t)piece) { perror("zero-fill"); exit(1); }
    filled += piece;
    if (filled % (16 << 20) == 0) fdatasync(fill_fd);
  }
  free(zeros);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: raw-sync FILE BYTES SECONDS append|zeroed|filling\n");
    return 2;
  }
  int filling = strcmp(argv[4], "filling") == 0;
  int zeroed = filling || strcmp(argv[4], "zeroed") == 0;
  size_t size = strtoul(argv[2], 0, 10);
  double seconds = atof(argv[3]);
  int fd = open(argv[1], O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) { perror("open"); return 1; }
  char *buf = malloc(size);
  memset(buf, 7, size);
  size_t cap = 1 << 20, n = 0;
  double *lat = malloc(cap * sizeof(double));
  off_t off = 0, region = (off_t)64 << 20;
  if (zeroed) {
    if ((off_t)size > region) region = size;
    char *zeros = calloc(1, 1 << 20);
    for (off_t o = 0; o < region; o += 1 << 20) pwrite(fd, zeros, 1 << 20, o);
    fsync(fd);
    free(zeros);
  }
  char fill_path[4096];
  pthread_t filler;
  if (filling) {
    snprintf(fill_path, sizeof fill_path, "%s.fill", argv[1]);
    int flags = O_CREAT | O_TRUNC | O_WRONLY;
#ifdef O_DIRECT
    flags |= O_DIRECT;
#endif
    fill_fd = open(fill_path, flags, 0644);
    if (fill_fd < 0) { perror("open fill"); return 1; }
    pthread_create(&filler, 0, fill, 0);
  }
  double start = now();
  while (now() - start < seconds && n < cap) {
    double t = now();
    if (pwrite(fd, buf, size, off) != (ssize_t)size) { perror("pwrite"); return 1; }
#ifdef __APPLE__
    if (fcntl(fd, F_FULLFSYNC) < 0) { perror("F_FULLFSYNC"); return 1; }
#else
    if (fdatasync(fd) < 0) { perror("fdatasync"); return 1; }
#endif
    lat[n++] = (now() - t) * 1e6;
    off += size;
    written += size;
    if (zeroed && off + (off_t)size > region) off = 0;
  }
  double elapsed = now() - start;
  if (filling) {
    stop = 1;
    pthread_join(filler, 0);
    close(fill_fd);
    unlink(fill_path);
  }
  qsort(lat, n, sizeof(double), cmp);
  printf("%.1f %.1f %.1f\n", n / elapsed, lat[n / 2], lat[n * 99 / 100]);
  close(fd);
  unlink(argv[1]);
  return 0;
}
