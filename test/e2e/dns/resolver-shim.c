/*
 * Emulates glibc before 2.36-9+deb12u9 in a process that loads this with LD_PRELOAD (see
 * reference/dns-resilience.md). When send_dg() times out with only one of the parallel A/AAAA answers, glibc
 * sets RES_SNGLKUP/RES_SNGLKUPREOP as a workaround. Before the fix they went into the thread's _res.options;
 * maybe_init() then saw options differing from the loaded configuration, took them for the application's own
 * change and never reloaded /etc/resolv.conf in that thread again. The fix keeps them in _res._flags: copying
 * them back into _res.options after each lookup recreates the stuck state exactly.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <resolv.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  static getaddrinfo_fn real;
  if (!real) real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  int rc = real(node, service, hints, res);
  _res.options |= (_res._flags & (RES_SNGLKUP | RES_SNGLKUPREOP));
  return rc;
}
