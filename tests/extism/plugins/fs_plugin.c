/* An Extism plugin in C with wasi-libc that reads and writes files under the manifest's
 * allowed_paths (tests/extism/test_extism_fs.py). The Extism imports are declared here by
 * hand, as Extism's C PDK header declares them. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IMPORT(name) __attribute__((import_module("extism:host/env"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("input_length") uint64_t extism_input_length(void);
IMPORT("input_load_u8") uint8_t extism_input_load_u8(uint64_t);
IMPORT("alloc") uint64_t extism_alloc(uint64_t);
IMPORT("store_u8") void extism_store_u8(uint64_t, uint8_t);
IMPORT("output_set") void extism_output_set(uint64_t, uint64_t);
IMPORT("error_set") void extism_error_set(uint64_t);

static char *input(void) {
  uint64_t n = extism_input_length();
  char *buf = malloc(n + 1);
  for (uint64_t i = 0; i < n; i++) buf[i] = extism_input_load_u8(i);
  buf[n] = 0;
  return buf;
}

static uint64_t block(const char *data, size_t n) {
  uint64_t h = extism_alloc(n);
  for (size_t i = 0; i < n; i++) extism_store_u8(h + i, data[i]);
  return h;
}

static int32_t output(const char *data, size_t n) {
  extism_output_set(block(data, n), n);
  return 0;
}

static int32_t fail(const char *what, const char *path) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "%s %s: %s", what, path, strerror(errno));
  extism_error_set(block(msg, n));
  return 1;
}

EXPORT("read") int32_t read_file(void) {
  char *path = input();
  FILE *f = fopen(path, "rb");
  if (!f) return fail("open", path);
  static char buf[65536];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return output(buf, n);
}

/* Input: PATH, a newline, then the bytes to write. */
EXPORT("write") int32_t write_file(void) {
  char *in = input();
  char *nl = strchr(in, '\n');
  if (!nl) return fail("parse", in);
  *nl = 0;
  FILE *f = fopen(in, "wb");
  if (!f) return fail("open", in);
  size_t want = strlen(nl + 1);
  size_t n = fwrite(nl + 1, 1, want, f);
  if (fclose(f) != 0 || n != want) return fail("write", in);
  return output("ok", 2);
}

static int cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in a directory, sorted, one a line (without . and ..). */
EXPORT("list") int32_t list_dir(void) {
  char *path = input();
  DIR *d = opendir(path);
  if (!d) return fail("opendir", path);
  char *names[256];
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d)) && count < 256)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[count++] = strdup(e->d_name);
  closedir(d);
  qsort(names, count, sizeof *names, cmp);
  static char out[65536];
  size_t n = 0;
  for (int i = 0; i < count; i++) n += snprintf(out + n, sizeof out - n, "%s\n", names[i]);
  return output(out, n);
}

EXPORT("remove") int32_t remove_file(void) {
  char *path = input();
  if (unlink(path) != 0) return fail("unlink", path);
  return output("ok", 2);
}

/* Opens the input path as often as it can without closing it: how many times it could. */
EXPORT("open_many") int32_t open_many(void) {
  char *path = input();
  int count = 0;
  while (count < 1000 && open(path, O_RDONLY) >= 0) count++;
  char out[16];
  return output(out, snprintf(out, sizeof out, "%d", count));
}
