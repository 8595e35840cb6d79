/*
 * creds.c - the credential calls, interposed only to step the shim's writer
 * thread out of the way.
 *
 * glibc makes setuid() and friends process-wide by running the system call
 * in every thread and aborts the process when one thread gets a different
 * result.  Capabilities are per thread: a program that keeps them in its
 * calling thread (prctl(PR_SET_KEEPCAPS), as setpriv does) and then changes
 * its uid and gid would see our writer thread fail the second call, and
 * glibc abort.  So the writer thread is stopped before the real call and
 * started again after it, inheriting the caller's new credentials.
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <grp.h>


/* Look the real function up once; NULL only if libc has none. */
static void *real_fn(void **slot, const char *name)
{
	if (!*slot) {
		int outer = hds_busy;
		hds_busy = 1;
		*slot = dlsym(RTLD_NEXT, name);
		hds_busy = outer;
	}
	return *slot;
}

#define CRED_WRAPPER(name, params, args)                                  \
	HDS_EXPORT int name params;                                       \
	int name params                                                   \
	{                                                                 \
		static void *slot;                                        \
		int (*fn) params;                                         \
		void *sym = real_fn(&slot, #name);                        \
		if (!sym) {                                               \
			errno = ENOSYS;                                   \
			return -1;                                        \
		}                                                         \
		memcpy(&fn, &sym, sizeof sym);                            \
		hds_writer_pause();                                       \
		int rc = fn args;                                         \
		int saved = errno;                                        \
		hds_writer_resume();                                      \
		errno = saved;                                            \
		return rc;                                                \
	}

CRED_WRAPPER(setuid, (uid_t u), (u))
CRED_WRAPPER(setgid, (gid_t g), (g))
CRED_WRAPPER(seteuid, (uid_t u), (u))
CRED_WRAPPER(setegid, (gid_t g), (g))
CRED_WRAPPER(setreuid, (uid_t r, uid_t e), (r, e))
CRED_WRAPPER(setregid, (gid_t r, gid_t e), (r, e))
CRED_WRAPPER(setresuid, (uid_t r, uid_t e, uid_t s), (r, e, s))
CRED_WRAPPER(setresgid, (gid_t r, gid_t e, gid_t s), (r, e, s))
CRED_WRAPPER(setgroups, (size_t n, const gid_t *list), (n, list))
