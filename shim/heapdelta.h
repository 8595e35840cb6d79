/*
 * heapdelta.h - ask heapdelta for a heap snapshot from inside a program.
 *
 *     #include <heapdelta.h>
 *     heapdelta_snapshot("after warm-up");
 *
 * Header only: nothing to link.  When the program runs under heapdelta
 * (LD_PRELOAD=libheapdelta.so or `heapdelta run`), the call writes a snapshot
 * with trigger "api" and this label before it returns, and returns 0.
 * Without heapdelta it does nothing and returns -1, so the call can stay in
 * production code.
 */
#ifndef HEAPDELTA_H
#define HEAPDELTA_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dlfcn.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline int heapdelta_snapshot(const char *label)
{
	int (*request)(const char *);
	void *sym = dlsym(RTLD_DEFAULT, "heapdelta_snapshot_request");

	if (!sym)
		return -1;
	memcpy(&request, &sym, sizeof request);
	return request(label ? label : "");
}

#ifdef __cplusplus
}
#endif

#endif /* HEAPDELTA_H */
