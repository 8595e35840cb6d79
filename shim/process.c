/*
 * process.c - who this process is, for the snapshots (its executable and
 * argv, copied into our own memory at start-up), and keeping the shim out
 * of the children it execs when asked to.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void hds_process_identity(void)
{
	ssize_t n = readlink("/proc/self/exe", hds.exe, sizeof hds.exe - 1);
	hds.exe[n > 0 ? n : 0] = 0;

	/* argv: /proc/self/cmdline, into our own memory. */
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	size_t cap = 1 << 20;
	char *buf = hds_map(cap);
	if (buf) {
		size_t len = 0;
		ssize_t r;
		while (len < cap && (r = read(fd, buf + len, cap - len)) > 0)
			len += (size_t)r;
		hds.cmdline = buf;
		hds.cmdline_len = len;
	}
	close(fd);
}

/* HEAPDELTA_CHILDREN=0: remove this library from LD_PRELOAD in place, so
 * programs this one execs run untraced.  setenv would allocate. */
void hds_strip_from_ld_preload(void)
{
	Dl_info info;
	extern char **environ;

	if (!dladdr((void *)hds_strip_from_ld_preload, &info) || !info.dli_fname)
		return;
	const char *me = strrchr(info.dli_fname, '/');
	me = me ? me + 1 : info.dli_fname;
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0)
			continue;
		char *s = *e + 11, *w = s;
		while (*s) {
			size_t len = strcspn(s, ": ");
			const char *base = memrchr(s, '/', len);
			base = base ? base + 1 : s;
			int mine = (size_t)(s + len - base) == strlen(me) && memcmp(base, me, strlen(me)) == 0;
			if (!mine) {
				if (w != *e + 11)
					*w++ = ':';
				memmove(w, s, len);
				w += len;
			}
			s += len;
			while (*s == ':' || *s == ' ')
				s++;
		}
		*w = 0;
	}
}
