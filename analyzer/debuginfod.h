/*
 * debuginfod.h - debug files and binaries by build-id from the debuginfod
 * servers of DEBUGINFOD_URLS, through libdebuginfod loaded on first use
 * (heapdelta neither links it nor needs it).  The symbolizer's last
 * resort, after every local place (symbolize.c).
 */
#ifndef HD_DEBUGINFOD_H
#define HD_DEBUGINFOD_H

#include <stddef.h>

enum debuginfod_kind { DEBUGINFOD_DEBUGINFO, DEBUGINFOD_EXECUTABLE };

struct debuginfod;

/* A client for the servers of DEBUGINFOD_URLS; NULL when it is unset or
 * empty (nothing is loaded then). */
struct debuginfod *debuginfod_new(void);
void debuginfod_free(struct debuginfod *d);

/* The path, in the client's cache (DEBUGINFOD_CACHE_PATH, by default
 * ~/.cache/debuginfod_client), of the file of that kind with build-id
 * id[0 .. n), downloaded if it is not there yet; the caller frees it and
 * opens the file itself.  NULL when no server has it, or when the servers
 * cannot be asked: libdebuginfod missing, a server unreachable or too slow
 * (DEBUGINFOD_TIMEOUT seconds without progress, 10 unless set): one note
 * on stderr then, and no more questions to them from this client. */
char *debuginfod_fetch(struct debuginfod *d, enum debuginfod_kind kind, const unsigned char *id, size_t n);

#endif /* HD_DEBUGINFOD_H */
