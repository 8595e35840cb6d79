/*
 * snapshot.c - writing one snapshot file (format/FORMAT.md); triggers.c
 * decides when.
 *
 * Cost of one snapshot: a walk over the stack records and every thread's
 * counter entries (proportional to distinct stacks and threads, not to live
 * blocks) plus the module map.  Nothing is paused: each thread's entry of a
 * stack is read at one moment (threads.c), so a site's bytes and count
 * always agree and the totals are the sum of the sites; across threads a
 * snapshot of a busy process is a cut through their recent operations,
 * exact once the process is quiet.
 *
 * Hazards handled here:
 *  - files are written under a temporary name created O_EXCL|O_NOFOLLOW, mode
 *    0600, then renamed with RENAME_NOREPLACE: no reader sees half a file,
 *    no planted symlink is followed, no existing file is replaced; on any
 *    error the temporary file is removed and one warning is printed;
 *  - the buffer is mapped per snapshot, so the writer thread and an exiting
 *    thread can write at once without sharing anything but the sequence;
 *  - fork: the child's sequence starts again from 1 (hds_snapshot_after_fork);
 *  - a program's RLIMIT_FSIZE: SIGXFSZ is blocked while we write and the
 *    instance our write raised is discarded, so the program lives on.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>        /* renameat2 only */
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define OUT_BUF (256u << 10)

static _Atomic uint64_t seq;
static uint64_t run_id;      /* META run_id: this process's, drawn at start and after fork */
static _Atomic int writes_active;
static _Atomic int warned;

/* ---- buffered output with a remembered file offset ------------------- */

struct out {
	int fd;
	int err;               /* first errno seen */
	unsigned char *buf;
	size_t len;
	uint64_t off;          /* file offset of buf[0] */
};

static void out_flush(struct out *o)
{
	size_t done = 0;

	while (!o->err && done < o->len) {
		ssize_t n = write(o->fd, o->buf + done, o->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			o->err = n < 0 ? errno : ENOSPC;
			break;
		}
		done += (size_t)n;
	}
	o->off += o->len;
	o->len = 0;
}

static void out_bytes(struct out *o, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n) {
		if (o->len == OUT_BUF)
			out_flush(o);
		size_t k = OUT_BUF - o->len < n ? OUT_BUF - o->len : n;
		memcpy(o->buf + o->len, c, k);
		o->len += k;
		c += k;
		n -= k;
	}
}

static void out_u32(struct out *o, uint32_t v) { unsigned char b[4]; hd_put_u32(b, v); out_bytes(o, b, 4); }
static void out_u64(struct out *o, uint64_t v) { unsigned char b[8]; hd_put_u64(b, v); out_bytes(o, b, 8); }

/* n 64-bit values, little-endian as every field. */
static void out_u64s(struct out *o, const uint64_t *v, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	out_bytes(o, v, 8 * n);
#else
	for (size_t i = 0; i < n; i++)
		out_u64(o, v[i]);
#endif
}

static void out_section(struct out *o, uint32_t tag, uint64_t len)
{
	out_u32(o, tag);
	out_u32(o, 0);
	out_u64(o, len);
}

static void out_string(struct out *o, const char *s, size_t len)
{
	out_u32(o, (uint32_t)len);
	out_bytes(o, s, len);
}

/* Overwrite n (4 or 8) bytes already emitted at file offset `at`: the part
 * already flushed in the file, the rest in the buffer (a field can straddle
 * a flush). */
static void out_patch(struct out *o, uint64_t at, uint64_t v, int n)
{
	unsigned char b[8];
	size_t in_file = at >= o->off ? 0 : (size_t)(o->off - at) < (size_t)n ? (size_t)(o->off - at) : (size_t)n;

	if (n == 8)
		hd_put_u64(b, v);
	else
		hd_put_u32(b, (uint32_t)v);
	if (in_file && !o->err && pwrite(o->fd, b, in_file, (off_t)at) != (ssize_t)in_file)
		o->err = errno ? errno : EIO;
	if (in_file < (size_t)n)
		memcpy(o->buf + (at + in_file - o->off), b + in_file, (size_t)n - in_file);
}

/* ---- small helpers without stdio ------------------------------------- */

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	*p = 0;
	return p;
}

static uint64_t read_rss(void)
{
	char buf[128];
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	ssize_t n;
	uint64_t pages = 0;
	const char *c;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (c = buf; *c && *c != ' '; c++)
		;
	for (c++; *c >= '0' && *c <= '9'; c++)
		pages = pages * 10 + (uint64_t)(*c - '0');
	return pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void warn_once(const char *what, int err)
{
	if (atomic_exchange(&warned, 1))
		return;
	const char *why = strerrordesc_np(err);
	static char msg[4352];   /* once per process (warned): off the stack */
	char *p = put_str(msg, what);
	p = put_str(p, " in ");
	p = put_str(p, hds.cfg.outdir);
	if (why) {
		p = put_str(p, ": ");
		put_str(p, why);
	}
	hds_warn(msg, "further snapshot errors are not reported");
}

/* ---- the snapshot ---------------------------------------------------- */

struct totals { uint64_t live_bytes, live_count, alloc_bytes, alloc_count; };

static void emit_meta(struct out *o, int trigger, uint64_t n, const struct totals *t, uint64_t peak_since_prev)
{
	uint64_t f[HD_META_NFIELDS] = { 0 };
	uint64_t dropped = atomic_load_relaxed(&hds.dropped_allocs) + atomic_load_relaxed(&hds.dropped_stacks);

	f[HD_META_PID] = (uint64_t)hds.pid;
	f[HD_META_PPID] = (uint64_t)getppid();
	f[HD_META_SEQ] = n;
	f[HD_META_TRIGGER] = (uint64_t)trigger;
	f[HD_META_UNWINDER] = (uint64_t)hds.cfg.unwinder;
	f[HD_META_DEPTH] = (uint64_t)hds.cfg.depth;
	f[HD_META_SAMPLE_BYTES] = hds.cfg.sample_bytes;
	f[HD_META_FLAGS] = (hds.foreign_malloc ? HD_FLAG_FOREIGN_MALLOC : 0) | (dropped ? HD_FLAG_DROPPED : 0) |
			   (hds.cfg.sample_bytes ? HD_FLAG_SAMPLED : 0);
	f[HD_META_WALL_NS] = hds_now_ns(CLOCK_REALTIME);
	f[HD_META_MONO_NS] = hds_now_ns(CLOCK_MONOTONIC);
	f[HD_META_START_MONO_NS] = hds.start_mono_ns;
	f[HD_META_LIVE_BYTES] = t->live_bytes;
	f[HD_META_LIVE_COUNT] = t->live_count;
	f[HD_META_PEAK_SINCE_PREV] = peak_since_prev;
	f[HD_META_PEAK_BYTES] = atomic_load_relaxed(&hds.peak_bytes);
	f[HD_META_ALLOC_BYTES] = t->alloc_bytes;
	f[HD_META_ALLOC_COUNT] = t->alloc_count;
	f[HD_META_FREE_BYTES] = t->alloc_bytes - t->live_bytes;
	f[HD_META_FREE_COUNT] = t->alloc_count - t->live_count;
	f[HD_META_UNKNOWN_FREES] = atomic_load_relaxed(&hds.unknown_frees);
	f[HD_META_DROPPED_ALLOCS] = atomic_load_relaxed(&hds.dropped_allocs);
	f[HD_META_DROPPED_STACKS] = atomic_load_relaxed(&hds.dropped_stacks);
	f[HD_META_RSS_BYTES] = read_rss();
	f[HD_META_SHIM_BYTES] = hds_stacks_resident() + hds_live_resident() + hds_modules_resident() +
				hds_cfi_resident() + hds_threads_resident() + hds_python_resident();
	f[HD_META_UNTRACKED_ALLOCS] = atomic_load_relaxed(&hds.untracked_allocs);
	f[HD_META_UNWIND_FALLBACKS] = atomic_load_relaxed(&hds.unwind_fallbacks);
	f[HD_META_UNWIND_CHECKED] = atomic_load_relaxed(&hds.unwind_checked);
	f[HD_META_UNWIND_MISMATCHES] = atomic_load_relaxed(&hds.unwind_mismatches);
	f[HD_META_UNWIND_NOCFI] = atomic_load_relaxed(&hds.unwind_nocfi);
	f[HD_META_UNWIND_MEMO_HITS] = hds_threads_memo_hits();
	f[HD_META_MISMATCHED_FREES] = atomic_load_relaxed(&hds.mismatched_frees);
	f[HD_META_RUN_ID] = run_id;
#if defined(__x86_64__)
	f[HD_META_MACHINE] = 62;    /* EM_X86_64 */
#elif defined(__aarch64__)
	f[HD_META_MACHINE] = 183;   /* EM_AARCH64 */
#endif

	out_section(o, HD_SEC_META, sizeof f);
	out_u64s(o, f, HD_META_NFIELDS);
}

static void emit_strings(struct out *o, const char *label)
{
	uint32_t nargs = 0;
	uint64_t len = 4 + 4 + strlen(label) + 4 + strlen(hds.exe);

	for (size_t i = 0; i < hds.cmdline_len; i += strlen(hds.cmdline + i) + 1) {
		nargs++;
		len += 4 + strlen(hds.cmdline + i);
	}
	out_section(o, HD_SEC_STRINGS, len);
	out_u32(o, 2 + nargs);
	out_string(o, label, strlen(label));
	out_string(o, hds.exe, strlen(hds.exe));
	for (size_t i = 0; i < hds.cmdline_len; i += strlen(hds.cmdline + i) + 1)
		out_string(o, hds.cmdline + i, strlen(hds.cmdline + i));
}

/* MODULES and MODULE_EPOCHS, over the same modules. */
static void emit_modules(struct out *o)
{
	uint32_t n = hds_modules_count();
	size_t need = hds_modules_encode(NULL, 0, n), need_epochs = hds_modules_encode_epochs(NULL, 0, n);
	size_t cap = need > need_epochs ? need : need_epochs;
	unsigned char *buf = hds_map(cap);

	if (!buf) {
		o->err = ENOMEM;
		return;
	}
	size_t len = hds_modules_encode(buf, cap, n);
	out_section(o, HD_SEC_MODULES, len);
	out_bytes(o, buf, len);
	len = hds_modules_encode_epochs(buf, cap, n);
	out_section(o, HD_SEC_MODULE_EPOCHS, len);
	out_bytes(o, buf, len);
	hds_unmap(buf, cap);
}

/* MISMATCHES: the kept records of releases by the wrong family. */
static void emit_mismatches(struct out *o)
{
	size_t cap = hds_mismatches_encode(NULL, 0) + (size_t)HDS_MISMATCH_MAX * (16 + 8 * HD_MAX_DEPTH);
	unsigned char *buf = hds_map(cap);

	if (!buf) {
		o->err = ENOMEM;
		return;
	}
	size_t len = hds_mismatches_encode(buf, cap);
	out_section(o, HD_SEC_MISMATCHES, len);
	out_bytes(o, buf, len);
	hds_unmap(buf, cap);
}

/*
 * The chain (format version 2).  A snapshot file holds the stacks first
 * seen since the process's previous snapshot, its *base*, and the counters
 * that changed since then.  `prev` remembers, per stack id, what the chain
 * of written files says of it; it is updated only once a file is complete
 * under its final name, so a snapshot that failed to write leaves the next
 * one building on the last good file.  One snapshot is written at a time
 * (chain_lock): a writer that cannot have the lock within 2 s (the exit
 * snapshot from a signal handler that interrupted a write) writes a file
 * that builds on nothing and leaves the chain as it was.
 */
struct prev {
	int64_t live_bytes, live_count, alloc_bytes, alloc_count;
	uint32_t epoch;
	uint32_t written;        /* its frames are in the chain */
};

static struct prev *prev;    /* hds.cfg.max_stacks entries, mapped on first use */
static uint32_t codes_written;   /* Python code objects [0, codes_written) are in the chain */
static uint64_t base_seq;    /* seq of the last complete snapshot; 0: none */
static atomic_flag chain_lock = ATOMIC_FLAG_INIT;

/* A stack as this snapshot reports it; 0 when it is not reported (not
 * published, or nothing recorded yet). */
static int stack_values(uint32_t id, const struct hds_sums *sums, struct prev *v)
{
	struct hds_stack *s = hds_stack_get(id);

	if (atomic_load_acquire(&s->ready) != 1 || sums[id].alloc_count <= 0)
		return 0;
	v->alloc_count = sums[id].alloc_count;
	v->alloc_bytes = sums[id].alloc_bytes;
	v->live_bytes = sums[id].live_bytes;
	v->live_count = sums[id].live_count;
	/* A free counted in one thread's shard can be read before the
	 * matching allocation in another's: clamp that underflow (bytes and
	 * count go negative together, so they stay in step). */
	if (v->live_bytes < 0 || v->live_count < 0)
		v->live_bytes = v->live_count = 0;
	if (hds.cfg.sample_bytes) {   /* weighted counts are kept in fixed point */
		v->live_count = (v->live_count + HDS_SAMPLED_COUNT_SCALE / 2) / HDS_SAMPLED_COUNT_SCALE;
		v->alloc_count = (v->alloc_count + HDS_SAMPLED_COUNT_SCALE / 2) / HDS_SAMPLED_COUNT_SCALE;
		if (v->live_count > v->alloc_count)
			v->live_count = v->alloc_count;
	}
	v->epoch = atomic_load_relaxed(&s->epoch);
	v->written = 1;
	return 1;
}

int hds_snapshot_live_bytes(int64_t *live)
{
	uint32_t n = hds_stacks_count();
	size_t len = sizeof(struct hds_sums) * (n ? n : 1);
	struct hds_sums *sums = hds_map(len);
	struct prev v;

	if (!sums)
		return -1;
	hds_counts_read(sums, n);
	*live = 0;
	for (uint32_t id = 0; id < n; id++)
		if (stack_values(id, sums, &v))
			*live += v.live_bytes;
	hds_unmap(sums, len);
	return 0;
}

/* What the chain says of stack id: zeros when this file builds on nothing. */
static inline const struct prev *chain_of(uint32_t id, int chained)
{
	static const struct prev none;

	return chained && prev ? &prev[id] : &none;
}

static void section_end(struct out *o, uint64_t hdr_at, uint32_t n)
{
	uint64_t end = o->off + o->len;

	out_patch(o, hdr_at + 8, end - hdr_at - HD_SEC_HDR_LEN, 8);
	out_patch(o, hdr_at + HD_SEC_HDR_LEN, n, 4);
}

/* NEW_STACKS, COUNTERS and STACK_EPOCHS for stacks [0, n), from the counter
 * sums; the totals are summed from the same values, so they are the sum of
 * the stacks. */
static void emit_stacks(struct out *o, const struct hds_sums *sums, uint32_t n, int chained, struct totals *t)
{
	uint64_t at = o->off + o->len;
	uint32_t listed = 0, last = 0;
	struct prev v;

	out_section(o, HD_SEC_NEW_STACKS, 0);
	out_u32(o, 0);
	for (uint32_t id = 0; id < n; id++) {
		if (!stack_values(id, sums, &v) || chain_of(id, chained)->written)
			continue;
		struct hds_stack *s = hds_stack_get(id);
		unsigned char rec[8];
		unsigned char *p = hd_put_u32(rec, id);
		p = hd_put_u16(p, s->depth);
		hd_put_u16(p, s->flags);
		out_bytes(o, rec, sizeof rec);
		out_u64s(o, hds_stack_frames(s), s->depth);
		listed++;
	}
	section_end(o, at, listed);

	at = o->off + o->len;
	listed = 0;
	out_section(o, HD_SEC_COUNTERS, 0);
	out_u32(o, 0);
	for (uint32_t id = 0; id < n; id++) {
		if (!stack_values(id, sums, &v))
			continue;
		t->live_bytes += (uint64_t)v.live_bytes;
		t->live_count += (uint64_t)v.live_count;
		t->alloc_bytes += (uint64_t)v.alloc_bytes;
		t->alloc_count += (uint64_t)v.alloc_count;
		const struct prev *c = chain_of(id, chained);
		if (v.live_bytes == c->live_bytes && v.live_count == c->live_count &&
		    v.alloc_bytes == c->alloc_bytes && v.alloc_count == c->alloc_count)
			continue;
		unsigned char rec[5 * HD_VARINT_MAX], *p = hd_put_varint(rec, id - last);
		p = hd_put_varint(p, hd_zigzag(v.live_bytes - c->live_bytes));
		p = hd_put_varint(p, hd_zigzag(v.live_count - c->live_count));
		p = hd_put_varint(p, hd_zigzag(v.alloc_bytes - c->alloc_bytes));
		p = hd_put_varint(p, hd_zigzag(v.alloc_count - c->alloc_count));
		out_bytes(o, rec, (size_t)(p - rec));
		last = id;
		listed++;
	}
	section_end(o, at, listed);

	at = o->off + o->len;
	listed = 0;
	out_section(o, HD_SEC_STACK_EPOCHS, 0);
	out_u32(o, 0);
	for (uint32_t id = 0; id < n; id++) {
		if (!stack_values(id, sums, &v) || v.epoch == chain_of(id, chained)->epoch)
			continue;
		out_u32(o, id);
		out_u32(o, v.epoch);
		listed++;
	}
	section_end(o, at, listed);
}

/* CODE: the Python code objects first seen since the base (ids from
 * `from` up to the count read once here, so the commit marks exactly them). */
static uint32_t emit_code(struct out *o, uint32_t from)
{
	uint64_t at = o->off + o->len;
	uint32_t upto = hds_python_ncodes();
	unsigned char *rec = NULL;
	size_t cap = 0;

	out_section(o, HD_SEC_CODE, 0);
	out_u32(o, 0);
	for (uint32_t id = from; id < upto; id++) {
		size_t need = hds_python_encode_code(id, NULL);
		if (need > cap) {
			if (rec)
				hds_unmap(rec, cap);
			cap = need < 65536 ? 65536 : need;
			if (!(rec = hds_map(cap))) {
				o->err = ENOMEM;
				return from;
			}
		}
		hds_python_encode_code(id, rec);
		out_bytes(o, rec, need);
	}
	if (rec)
		hds_unmap(rec, cap);
	section_end(o, at, upto - from);
	return upto;
}

/* JIT: for the frames of the stacks new in this file (as NEW_STACKS lists
 * them) that lie outside every module, the entries of the runtime's perf
 * map that cover them (jit.c).  Always written, empty when there are none,
 * so that a file merged by thinning finds it in both parts.  Nothing is
 * looked at in a process without a perf map; in one with a map, whether a
 * frame lies in a module is asked once per address in a small
 * direct-mapped memo (outer frames are shared by many stacks: 100,000
 * stacks of a Python program, 3 million frames, took 130 ms asked each
 * time). */
#define JIT_MEMO 4096
static void emit_jit(struct out *o, const struct hds_sums *sums, uint32_t n, int chained)
{
	struct memo { uint64_t addr, outside; } *memo = NULL;
	uint64_t *addrs = NULL;
	size_t want = 0, k = 0, len = 0, cap = 0;
	unsigned char *payload = NULL;
	struct prev v;

	for (uint32_t id = 0; id < n; id++)
		if (stack_values(id, sums, &v) && !chain_of(id, chained)->written)
			want += hds_stack_get(id)->depth;
	if (want && hds_jit_map_exists() && (addrs = hds_map(want * sizeof *addrs)) &&
	    (memo = hds_map(JIT_MEMO * sizeof *memo))) {
		for (uint32_t id = 0; id < n; id++) {
			if (!stack_values(id, sums, &v) || chain_of(id, chained)->written)
				continue;
			struct hds_stack *s = hds_stack_get(id);
			const uintptr_t *f = hds_stack_frames(s);
			for (int i = 0; i < s->depth && k < want; i++) {
				if (hd_frame_is_python(f[i]))
					continue;
				struct memo *m = &memo[(f[i] * 0x9e3779b97f4a7c15u) >> 52];
				if (m->addr != f[i] || !f[i]) {
					m->addr = f[i];
					m->outside = !hds_modules_contains(f[i]);
				}
				if (m->outside)
					addrs[k++] = f[i];
			}
		}
		payload = hds_jit_encode(addrs, k, &len, &cap);
	}
	if (memo)
		hds_unmap(memo, JIT_MEMO * sizeof *memo);
	if (addrs)
		hds_unmap(addrs, want * sizeof *addrs);
	if (payload) {
		out_section(o, HD_SEC_JIT, len);
		out_bytes(o, payload, len);
		hds_unmap(payload, cap);
	} else {
		out_section(o, HD_SEC_JIT, 4);
		out_u32(o, 0);
	}
}

/* The file is complete under its name: what it says is now the chain. */
static void chain_commit(const struct hds_sums *sums, uint32_t n, uint64_t seq_written)
{
	struct prev v;

	for (uint32_t id = 0; prev && id < n; id++)
		if (stack_values(id, sums, &v))
			prev[id] = v;
	base_seq = seq_written;
}

/* REACH (exit snapshots): the classification reach.c left in hds_reach. */
static void emit_reach(struct out *o)
{
	uint64_t at = o->off + o->len;
	uint32_t listed = 0, last = 0;

	out_section(o, HD_SEC_REACH, 0);
	out_u32(o, hds_reach.status);
	out_u32(o, hds_reach.threads);
	out_u64(o, hds_reach.ns);
	out_u64(o, hds_reach.root_bytes);
	out_u64(o, hds_reach.block_bytes);
	out_u32(o, 0);
	for (uint32_t id = 0; hds_reach.kinds && id < hds_reach.nstacks; id++) {
		const uint64_t *k = &hds_reach.kinds[(uint64_t)id * 8];
		uint64_t any = 0;
		for (int i = 0; i < 8; i++)
			any |= k[i];
		if (!any)
			continue;
		unsigned char rec[9 * HD_VARINT_MAX], *p = hd_put_varint(rec, id - last);
		for (int i = 0; i < 8; i++)
			p = hd_put_varint(p, k[i]);
		out_bytes(o, rec, (size_t)(p - rec));
		last = id;
		listed++;
	}
	uint64_t end = o->off + o->len;
	out_patch(o, at + 8, end - at - HD_SEC_HDR_LEN, 8);
	out_patch(o, at + HD_SEC_HDR_LEN + 32, listed, 4);
}

/* Write everything into o.  META goes first in the file but needs the
 * totals from the stack walk, so it is written with a placeholder and
 * patched: its length is fixed. */
static void emit_snapshot(struct out *o, int trigger, uint64_t n, const char *label, const struct hds_sums *sums,
			  uint32_t nstacks, int chained, uint64_t peak_since_prev, uint32_t *codes_upto)
{
	struct totals t = { 0 };
	unsigned char hdr[HD_FILE_HDR_LEN];

	memcpy(hdr, HD_MAGIC, HD_MAGIC_LEN);
	hd_put_u32(hdr + 8, HD_VERSION);
	hd_put_u32(hdr + 12, 0);
	out_bytes(o, hdr, sizeof hdr);

	uint64_t meta_at = o->off + o->len;
	struct totals zero = { 0 };
	emit_meta(o, trigger, n, &zero, peak_since_prev);
	emit_strings(o, label);
	emit_modules(o);
	emit_stacks(o, sums, nstacks, chained, &t);
	*codes_upto = emit_code(o, chained ? codes_written : 0);
	emit_jit(o, sums, nstacks, chained);
	emit_mismatches(o);
	if (trigger == HD_TRIGGER_EXIT)
		emit_reach(o);
	out_section(o, HD_SEC_END, 0);

	/* Patch the counters that depend on the walk. */
	uint64_t base = meta_at + HD_SEC_HDR_LEN;
	out_patch(o, base + 8 * HD_META_LIVE_BYTES, t.live_bytes, 8);
	out_patch(o, base + 8 * HD_META_LIVE_COUNT, t.live_count, 8);
	out_patch(o, base + 8 * HD_META_ALLOC_BYTES, t.alloc_bytes, 8);
	out_patch(o, base + 8 * HD_META_ALLOC_COUNT, t.alloc_count, 8);
	out_patch(o, base + 8 * HD_META_FREE_BYTES, t.alloc_bytes - t.live_bytes, 8);
	out_patch(o, base + 8 * HD_META_FREE_COUNT, t.alloc_count - t.live_count, 8);
	out_patch(o, base + 8 * HD_META_BASE_SEQ, chained ? base_seq : 0, 8);
	/* A peak is never below what is live now (the counters race by a hair
	 * while other threads run). */
	if (atomic_load_relaxed(&hds.peak_bytes) < t.live_bytes)
		out_patch(o, base + 8 * HD_META_PEAK_BYTES, t.live_bytes, 8);
	if (peak_since_prev < t.live_bytes)
		out_patch(o, base + 8 * HD_META_PEAK_SINCE_PREV, t.live_bytes, 8);
	out_flush(o);
}

void hds_snapshot_name(char *out, const char *prefix, uint64_t n, const char *trig, const char *suffix)
{
	char *p = put_str(out, hds.cfg.outdir);
	p = put_str(p, prefix);
	p = hds_put_dec(p, (uint64_t)hds.pid);
	p = put_str(p, ".");
	p = hds_put_dec(p, n);
	p = put_str(p, ".");
	p = put_str(p, trig);
	put_str(p, suffix);
}

/* Is any snapshot file of sequence n of this process there (any trigger)? */
static int seq_taken(uint64_t n, char *name)
{
	static const int triggers[] = { HD_TRIGGER_INTERVAL, HD_TRIGGER_SIGNAL, HD_TRIGGER_API, HD_TRIGGER_EXIT };

	for (int i = 0; i < 4; i++) {
		hds_snapshot_name(name, "/heapdelta.", n, hd_trigger_name((uint64_t)triggers[i]), ".snap");
		if (faccessat(AT_FDCWD, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
			return 1;
	}
	return 0;
}

/* Write snapshot n under its temporary name and rename it to its final
 * one.  0; -1 after a warning; 1 when the final name appeared meanwhile
 * (try another n). */
static int write_file(int trigger, const char *label, uint64_t n, const struct hds_sums *sums, uint32_t nstacks,
		      int chained, uint64_t peak_since_prev, char *final, char *tmp, uint32_t *codes_upto)
{
	const char *trig = hd_trigger_name((uint64_t)trigger);
	struct out o = { .fd = -1 };

	hds_snapshot_name(tmp, "/.heapdelta.", n, trig, ".tmp");
	hds_snapshot_name(final, "/heapdelta.", n, trig, ".snap");
	/* O_EXCL|O_NOFOLLOW: a file or planted link of that name is never
	 * written through. */
	o.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (o.fd < 0) {
		if (errno == EEXIST)
			return 1;
		warn_once("cannot create a snapshot file", errno);
		return -1;
	}
	o.buf = hds_map(OUT_BUF);
	if (!o.buf) {
		o.err = ENOMEM;
	} else {
		emit_snapshot(&o, trigger, n, label, sums, nstacks, chained, peak_since_prev, codes_upto);
		hds_unmap(o.buf, OUT_BUF);
	}
	if (close(o.fd) < 0 && !o.err)
		o.err = errno;
	if (o.err) {
		unlink(tmp);
		warn_once("cannot write a snapshot", o.err);
		return -1;
	}
	/* Rename without replacing: a file of that name is kept. */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) == 0)
		return 0;
	int err = errno;
	unlink(tmp);
	if (err == EEXIST)
		return 1;
	warn_once("cannot rename a snapshot file", err);
	return -1;
}

/* Take the chain lock, waiting at most 2 s. */
static int chain_take(void)
{
	for (int i = 0; i < 2000; i++) {
		if (!atomic_flag_test_and_set_explicit(&chain_lock, memory_order_acquire))
			return 1;
		struct timespec ms = { 0, 1000000 };
		nanosleep(&ms, NULL);
	}
	return 0;
}

int hds_snapshot_write(int trigger, const char *label, int refresh)
{
	int outer = hds_busy, saved = errno, rc = -1;
	sigset_t xfsz, oldmask, pending;
	/* The file names, off the stack: a snapshot may be written from a
	 * thread with a small one (exit from a thread of PTHREAD_STACK_MIN). */
	enum { NAME = 4400 };
	char *names = hds_map(3 * NAME), *final = names, *tmp = names + NAME, *probe = names + 2 * NAME;

	hds_busy = 1;
	hds_tl_nopark++;   /* reach.c never stops a thread in here */
	/* A write past the program's RLIMIT_FSIZE raises SIGXFSZ, whose default
	 * action ends the process: block it while we write, and discard the
	 * one we caused (never one the program already had pending). */
	sigemptyset(&xfsz);
	sigaddset(&xfsz, SIGXFSZ);
	pthread_sigmask(SIG_BLOCK, &xfsz, &oldmask);
	sigpending(&pending);
	int xfsz_was_pending = sigismember(&pending, SIGXFSZ);
	if (refresh)
		hds_modules_refresh(1);
	atomic_add_relaxed(&writes_active, 1);

	int locked = chain_take();
	if (locked && !prev)
		prev = hds_map(sizeof *prev * hds.cfg.max_stacks);
	if (locked && prev)
		hds_thin_before_write(trigger);
	int chained = locked && prev && base_seq;
	uint32_t nstacks = hds_stacks_count();
	size_t sums_len = sizeof(struct hds_sums) * (nstacks ? nstacks : 1);
	struct hds_sums *sums = hds_map(sums_len);
	if (!sums || !names) {
		warn_once("cannot write a snapshot", ENOMEM);
		goto done;
	}
	hds_counts_read(sums, nstacks);
	/* The interval's peak, once: its next starts now (given back below if
	 * no file is written). */
	uint64_t peak_since_prev = hds_total_sync();

	/* The next sequence number no file of ours has (an earlier process
	 * with the same pid, a planted file): a file's name and its META seq
	 * agree, and later files find their base by it. */
	for (int tries = 0; tries < 1000 && rc < 0; tries++) {
		uint64_t n = atomic_add_relaxed(&seq, 1) + 1;
		if (seq_taken(n, probe))
			continue;
		uint32_t codes_upto = 0;
		int r = write_file(trigger, label ? label : "", n, sums, nstacks, chained, peak_since_prev, final, tmp,
				   &codes_upto);
		if (r < 0)
			break;
		if (r == 0) {
			rc = 0;
			if (locked && prev) {
				chain_commit(sums, nstacks, n);
				codes_written = codes_upto;
				hds_thin_after_write(trigger, n);
			}
		}
	}
	if (rc != 0)
		hds_note_peak((int64_t)peak_since_prev);
done:
	if (sums)
		hds_unmap(sums, sums_len);
	if (names)
		hds_unmap(names, 3 * NAME);
	if (locked)
		atomic_flag_clear_explicit(&chain_lock, memory_order_release);
	if (!xfsz_was_pending) {
		struct timespec zero = { 0, 0 };
		sigpending(&pending);
		if (sigismember(&pending, SIGXFSZ))
			sigtimedwait(&xfsz, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	atomic_sub_relaxed(&writes_active, 1);
	hds_tl_nopark--;
	hds_busy = outer;
	errno = saved;
	return rc;
}

int hds_snapshot_writing(void)
{
	return atomic_load_relaxed(&writes_active) > 0;
}

/* A new process, for the format: its own run id, and a chain that starts
 * with its first snapshot (the parent's files are not its bases). */
void hds_snapshot_new_run(void)
{
	uint64_t r = hds_now_ns(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 32) ^ hds_now_ns(CLOCK_MONOTONIC) * 0x9e3779b97f4a7c15u;
	unsigned char buf[8];

	if (getrandom(buf, sizeof buf, GRND_NONBLOCK) == (ssize_t)sizeof buf)
		r ^= hd_get_u64(buf);
	run_id = r ? r : 1;
	base_seq = 0;
	codes_written = 0;
	if (prev)
		madvise(prev, sizeof *prev * hds.cfg.max_stacks, MADV_DONTNEED);   /* zeros */
	hds_thin_forget();
}

void hds_snapshot_after_fork(void)
{
	atomic_store_relaxed(&seq, 0);
	atomic_store_relaxed(&writes_active, 0);
	atomic_flag_clear(&chain_lock);
	hds_snapshot_new_run();
}
