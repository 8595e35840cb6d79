/*
 * snapshot.h - reading snapshot files (format: format/FORMAT.md).
 */
#ifndef HD_SNAPSHOT_H
#define HD_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "hd_format.h"

struct hd_segment {
	uint64_t start, size, offset;
	uint32_t flags;
};

struct hd_module {
	uint64_t base;
	uint32_t flags;                        /* enum hd_module_flags */
	uint32_t build_id_len;
	unsigned char build_id[HD_MAX_BUILD_ID];
	uint32_t nseg;
	struct hd_segment *seg;
	char *path;
	uint32_t first_epoch, gone_epoch;      /* MODULE_EPOCHS; 0 and HD_EPOCH_NONE without it */
};

struct hd_stack {
	uint32_t id;
	uint16_t depth, flags;
	uint64_t live_bytes, live_count, alloc_bytes, alloc_count;
	uint64_t *frames;                      /* innermost first */
	uint32_t epoch;                        /* STACK_EPOCHS; 0 when not listed */
};

/* A release by the wrong family (MISMATCHES). */
struct hd_mismatch {
	uint32_t alloc_stack;                  /* id of the allocating stack */
	uint8_t alloc_kind, free_kind;         /* enum hd_alloc_kind */
	uint16_t depth;
	uint64_t size;
	uint64_t *frames;                      /* the releasing stack, innermost first */
};

struct snapshot {
	char *path;
	uint64_t meta[HD_META_NFIELDS];
	char *label, *exe;
	char **argv;
	uint32_t argc;
	struct hd_module *modules;
	uint32_t nmodules;
	struct hd_stack *stacks;
	uint32_t nstacks;
	uint64_t *frame_pool;
	struct hd_mismatch *mismatches;
	uint32_t nmismatches;
};

/* Read and validate the snapshot at path.  0 on success; -1 after printing
 * one line naming the file, the byte offset and what was being read. */
int snapshot_load(const char *path, struct snapshot *s);
/* The same on bytes in memory (the fuzz target's entry point). */
int snapshot_parse(const char *path, const unsigned char *data, size_t len, struct snapshot *s);
void snapshot_release(struct snapshot *s);

/* Append to *paths the snapshot files named by args: files as given,
 * directories as their heapdelta *.snap files.  0, or -1 after an error
 * line.  The strings and the array are the caller's to free. */
int snapshot_paths(char **args, int nargs, char ***paths, int *npaths);

/* The module containing runtime address addr for a stack of map epoch
 * `epoch`: the one mapped there in that epoch, else a loaded one, else an
 * unloaded one; NULL when none. */
const struct hd_module *snapshot_module_of(const struct snapshot *s, uint64_t addr, uint32_t epoch);
/* The stack with id `id`, or NULL. */
const struct hd_stack *snapshot_stack_by_id(const struct snapshot *s, uint32_t id);

#endif /* HD_SNAPSHOT_H */
