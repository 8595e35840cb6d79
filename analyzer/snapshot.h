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

/* A Python code object (CODE): what a Python frame's line is read from. */
struct hd_code {
	uint32_t id, firstlineno;
	char *filename, *qualname;
	unsigned char *linetable;
	uint32_t linetable_len;
};

/* An entry of the runtime's perf map (JIT): JIT-compiled code's name. */
struct hd_jit_entry {
	uint64_t start, size;
	char *name;
};

/* A return address and the entry that names it. */
struct hd_jit_addr {
	uint64_t addr;
	const struct hd_jit_entry *entry;
};

/* A release by the wrong family (MISMATCHES). */
struct hd_mismatch {
	uint32_t alloc_stack;                  /* id of the allocating stack */
	uint8_t alloc_kind, free_kind;         /* enum hd_alloc_kind */
	uint16_t depth;
	uint64_t size;
	uint64_t *frames;                      /* the releasing stack, innermost first */
};

/* One stack's live blocks by reachability (REACH), indexed by enum
 * hd_reach_kind. */
struct hd_reach_rec {
	uint32_t id;
	uint64_t bytes[HD_REACH_NKINDS], count[HD_REACH_NKINDS];
};

/* The REACH section of a file (never built on a base: a chain's last file
 * alone says it).  present == 0: the file has none. */
struct hd_reach {
	int present;
	size_t at;                             /* the section's offset in the file, for messages */
	uint32_t status;                       /* enum hd_reach_status; 0: classified */
	uint32_t threads;                      /* threads stopped for the scan */
	uint64_t ns, root_bytes, block_bytes;
	struct hd_reach_rec *recs;             /* by increasing id */
	uint32_t n;
};

/* Version 2: one stack's counter changes in a file (COUNTERS). */
struct hd_delta {
	uint32_t id;
	int64_t d[4];                          /* live_bytes, live_count, alloc_bytes, alloc_count */
};

struct snapshot {
	char *path;
	uint32_t version;                      /* of the file */
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
	/* Version 2, as read from the file alone: its counter changes and epoch
	 * updates.  snapshot_load() applies them along the chain; after it,
	 * stacks hold the whole snapshot.  partial: a file read alone
	 * (snapshot_parse) that builds on a base. */
	struct hd_delta *deltas;
	uint32_t ndeltas;
	struct { uint32_t id, epoch; } *epochs;
	uint32_t nepochs;
	int partial;
	/* Python code objects by id (NULL where none), the chain's; they live
	 * as long as the program (several snapshots share them). */
	const struct hd_code **codes;
	uint32_t ncodes;
	struct hd_code *own_codes;             /* this file's CODE records */
	uint32_t nown_codes;
	struct hd_reach reach;                 /* REACH: this file's own */
	/* JIT code's names, the chain's: return addresses by address, each
	 * with the entry of the latest file that lists it; the entries live
	 * as long as the program. */
	struct hd_jit_addr *jit;
	uint32_t njit;
	struct hd_jit_entry *own_jit;          /* this file's JIT entries */
	uint32_t nown_jit;
	struct hd_jit_addr *own_jit_addrs;     /* ... and the addresses they name, in file order */
	uint32_t nown_jit_addrs;
};

/* The perf map entry naming return address addr (a frame outside every
 * module) in s, or NULL. */
const struct hd_jit_entry *snapshot_jit_of(const struct snapshot *s, uint64_t addr);

/* The code object of Python frame value f in s, or NULL. */
const struct hd_code *snapshot_code_of(const struct snapshot *s, uint64_t f);

/* Read and validate the snapshot at path: for a version 2 file, with its
 * chain of bases from the same directory (format/FORMAT.md).  0 on
 * success; -1 after printing one line naming the file, the byte offset and
 * what was being read, or the base that is missing.  Loading the files of a
 * process in seq order reads each file once. */
int snapshot_load(const char *path, struct snapshot *s);
/* One file's bytes, alone (the fuzz target's entry point); a version 2
 * file with a base is left partial. */
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

/* Whether s's live blocks are classified by reachability: a REACH section
 * with status 0. */
int snapshot_classified(const struct snapshot *s);
/* The REACH record of stack id, or NULL (none, or not classified). */
const struct hd_reach_rec *snapshot_reach_of(const struct snapshot *s, uint32_t id);
/* Why s is not classified, as one phrase ("no reachability data in this
 * snapshot", or the status's meaning from FORMAT.md; an unknown status by
 * its number), written into buf (at least 128 bytes); NULL when it is
 * classified. */
const char *snapshot_reach_reason(const struct snapshot *s, char *buf, size_t len);
/* The name of a kind of enum hd_reach_kind: "definite", "indirect",
 * "possible", "reachable". */
const char *snapshot_reach_kind_name(int kind);

#endif /* HD_SNAPSHOT_H */
