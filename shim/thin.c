/*
 * thin.c - HEAPDELTA_KEEP=N: at most N interval snapshots of this process
 * on disk, spread over the whole run (format/FORMAT.md, "Thinning").
 *
 * After each snapshot the writer records it here, and before it writes an
 * interval snapshot with N already on disk, one goes (chain lock held, so
 * snapshots and thinning never interleave; at no moment are more than N
 * on disk): the one between the first and the latest whose neighbours are
 * closest in time. its successor S in the chain is
 * rewritten to build on its base (new stacks, code objects and JIT entries joined,
 * counter changes summed stack by stack, epochs updated), renamed over S, and only then is it
 * deleted, so every file on disk always has its chain on disk.
 *
 * Workload: one merge per interval snapshot once N are on disk; a merge
 * reads two files (deltas: small in steady state) and writes one.  Memory:
 * the files are mapped read-only and the result is built in one mapping,
 * all given back at once; no malloc, no stdio.
 *
 * Bounds: files are this process's own, but every read is still checked;
 * anything unexpected abandons the merge (one warning) and thinning stops,
 * with nothing on disk changed.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>        /* rename only */
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_KEPT 8192

struct kept {
	uint64_t seq;
	uint64_t mono_ns;
	int trigger;
};

static struct kept *files;   /* this run's snapshots on disk, oldest first */
static uint32_t nfiles;
static int gave_up;

void hds_thin_forget(void)
{
	nfiles = 0;
	gave_up = 0;
}

/* ---- reading our own files ---------------------------------------------- */

struct map {
	const unsigned char *p;
	size_t len;
};

static int map_file(const char *path, struct map *m)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	m->p = NULL;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < HD_FILE_HDR_LEN) {
		close(fd);
		return -1;
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	m->p = p;
	m->len = (size_t)st.st_size;
	return 0;
}

/* The payload of section `tag`: *at and *len; 0, or -1 when absent. */
static int find_section(const struct map *m, uint32_t tag, size_t *at, size_t *len)
{
	for (size_t off = HD_FILE_HDR_LEN; off + HD_SEC_HDR_LEN <= m->len;) {
		uint32_t t = hd_get_u32(m->p + off);
		uint64_t l = hd_get_u64(m->p + off + 8);
		if (l > m->len - off - HD_SEC_HDR_LEN)
			return -1;
		if (t == tag) {
			*at = off + HD_SEC_HDR_LEN;
			*len = (size_t)l;
			return 0;
		}
		if (t == HD_SEC_END)
			return -1;
		off += HD_SEC_HDR_LEN + (size_t)l;
	}
	return -1;
}

/* ---- merging ------------------------------------------------------------ */

struct rec { uint64_t id; int64_t d[4]; };

/* Next COUNTERS record from [*pos, end); 0, or -1 when malformed. */
static int next_counter(const unsigned char *p, size_t *pos, size_t end, uint64_t *last, struct rec *r)
{
	uint64_t v;
	size_t k = hd_get_varint(p + *pos, end - *pos, &v);

	if (!k)
		return -1;
	*pos += k;
	r->id = *last + v;
	*last = r->id;
	for (int i = 0; i < 4; i++) {
		if (!(k = hd_get_varint(p + *pos, end - *pos, &v)))
			return -1;
		*pos += k;
		r->d[i] = hd_unzigzag(v);
	}
	return 0;
}

/* COUNTERS of K and S joined by id, changes summed; out must have room for
 * both.  Returns the bytes written, or 0 when malformed. */
static size_t merge_counters(const unsigned char *kp, size_t klen, const unsigned char *sp, size_t slen,
			     unsigned char *out)
{
	if (klen < 4 || slen < 4)
		return 0;
	uint32_t kn = hd_get_u32(kp), sn = hd_get_u32(sp), n = 0;
	size_t kpos = 4, spos = 4;
	uint64_t klast = 0, slast = 0, olast = 0;
	struct rec kr, sr;
	int have_k = kn > 0, have_s = sn > 0;
	unsigned char *o = out + 4;

	if ((have_k && next_counter(kp, &kpos, klen, &klast, &kr)) || (have_s && next_counter(sp, &spos, slen, &slast, &sr)))
		return 0;
	while (have_k || have_s) {
		struct rec m;
		if (have_k && (!have_s || kr.id < sr.id)) {
			m = kr;
			have_k = --kn > 0;
			if (have_k && next_counter(kp, &kpos, klen, &klast, &kr))
				return 0;
		} else if (have_s && (!have_k || sr.id < kr.id)) {
			m = sr;
			have_s = --sn > 0;
			if (have_s && next_counter(sp, &spos, slen, &slast, &sr))
				return 0;
		} else {   /* the same stack in both: its changes add up */
			m = sr;
			for (int i = 0; i < 4; i++)
				m.d[i] += kr.d[i];
			have_k = --kn > 0;
			have_s = --sn > 0;
			if ((have_k && next_counter(kp, &kpos, klen, &klast, &kr)) ||
			    (have_s && next_counter(sp, &spos, slen, &slast, &sr)))
				return 0;
		}
		o = hd_put_varint(o, m.id - olast);
		olast = m.id;
		for (int i = 0; i < 4; i++)
			o = hd_put_varint(o, hd_zigzag(m.d[i]));
		n++;
	}
	if (kpos != klen || spos != slen)
		return 0;
	hd_put_u32(out, n);
	return (size_t)(o - out);
}

/* STACK_EPOCHS of K updated by S (both in increasing id order). */
static size_t merge_epochs(const unsigned char *kp, size_t klen, const unsigned char *sp, size_t slen,
			   unsigned char *out)
{
	if (klen < 4 || slen < 4)
		return 0;
	uint32_t kn = hd_get_u32(kp), sn = hd_get_u32(sp), n = 0, i = 0, j = 0;
	if (klen != 4 + (size_t)kn * 8 || slen != 4 + (size_t)sn * 8)
		return 0;
	unsigned char *o = out + 4;

	while (i < kn || j < sn) {
		uint32_t ki = i < kn ? hd_get_u32(kp + 4 + 8 * i) : UINT32_MAX;
		uint32_t sj = j < sn ? hd_get_u32(sp + 4 + 8 * j) : UINT32_MAX;
		const unsigned char *from;
		if (j < sn && sj <= ki) {
			from = sp + 4 + 8 * j++;
			if (sj == ki)
				i++;
		} else {
			from = kp + 4 + 8 * i++;
		}
		memcpy(o, from, 8);
		o += 8;
		n++;
	}
	hd_put_u32(out, n);
	return (size_t)(o - out);
}

static unsigned char *put_section(unsigned char *o, uint32_t tag, const void *payload, size_t len)
{
	o = hd_put_u32(o, tag);
	o = hd_put_u32(o, 0);
	o = hd_put_u64(o, len);
	memcpy(o, payload, len);
	return o + len;
}

/* The file that replaces S: S building on K's base.  In buf (room for both
 * files); returns its length, or 0 when a file is not as expected. */
static size_t merge(const struct map *k, const struct map *s, unsigned char *buf)
{
	size_t kmeta, kmeta_len, knew, knew_len, kcnt, kcnt_len, kep, kep_len, kcode, kcode_len, kjit, kjit_len;
	unsigned char *o = buf;
	/* JIT: K's, when it has one (files before the section have none). */
	int k_has_jit = find_section(k, HD_SEC_JIT, &kjit, &kjit_len) == 0 && kjit_len >= 4;

	if (find_section(k, HD_SEC_META, &kmeta, &kmeta_len) || kmeta_len < 8 * (HD_META_BASE_SEQ + 1) ||
	    find_section(k, HD_SEC_NEW_STACKS, &knew, &knew_len) || knew_len < 4 ||
	    find_section(k, HD_SEC_COUNTERS, &kcnt, &kcnt_len) ||
	    find_section(k, HD_SEC_STACK_EPOCHS, &kep, &kep_len) ||
	    find_section(k, HD_SEC_CODE, &kcode, &kcode_len) || kcode_len < 4)
		return 0;
	memcpy(o, s->p, HD_FILE_HDR_LEN);
	o += HD_FILE_HDR_LEN;
	for (size_t off = HD_FILE_HDR_LEN; off + HD_SEC_HDR_LEN <= s->len;) {
		uint32_t tag = hd_get_u32(s->p + off);
		uint64_t len = hd_get_u64(s->p + off + 8);
		const unsigned char *pl = s->p + off + HD_SEC_HDR_LEN;
		if (len > s->len - off - HD_SEC_HDR_LEN)
			return 0;
		unsigned char *at = o + HD_SEC_HDR_LEN;
		size_t n;
		switch (tag) {
		case HD_SEC_META:
			if (len < 8 * (HD_META_BASE_SEQ + 1))
				return 0;
			o = put_section(o, tag, pl, (size_t)len);
			memcpy(at + 8 * HD_META_BASE_SEQ, k->p + kmeta + 8 * HD_META_BASE_SEQ, 8);
			break;
		case HD_SEC_JIT:
			if (!k_has_jit) {
				o = put_section(o, tag, pl, (size_t)len);
				break;
			}
			/* fall through */
		case HD_SEC_NEW_STACKS:
		case HD_SEC_CODE: {
			/* K's records, then S's: each is new in the chain once
			 * (JIT: S's entries, later, take precedence). */
			size_t from = tag == HD_SEC_CODE ? kcode : tag == HD_SEC_JIT ? kjit : knew;
			size_t flen = tag == HD_SEC_CODE ? kcode_len : tag == HD_SEC_JIT ? kjit_len : knew_len;
			if (len < 4)
				return 0;
			o = hd_put_u32(o, tag);
			o = hd_put_u32(o, 0);
			o = hd_put_u64(o, flen - 4 + len);
			o = hd_put_u32(o, hd_get_u32(k->p + from) + hd_get_u32(pl));
			memcpy(o, k->p + from + 4, flen - 4);
			o += flen - 4;
			memcpy(o, pl + 4, (size_t)len - 4);
			o += len - 4;
			break;
		}
		case HD_SEC_COUNTERS:
		case HD_SEC_STACK_EPOCHS:
			n = tag == HD_SEC_COUNTERS ? merge_counters(k->p + kcnt, kcnt_len, pl, (size_t)len, at)
						   : merge_epochs(k->p + kep, kep_len, pl, (size_t)len, at);
			if (!n)
				return 0;
			o = hd_put_u32(o, tag);
			o = hd_put_u32(o, 0);
			o = hd_put_u64(o, n);
			o += n;
			break;
		default:
			o = put_section(o, tag, pl, (size_t)len);
		}
		off += HD_SEC_HDR_LEN + (size_t)len;
		if (tag == HD_SEC_END)
			return (size_t)(o - buf);
	}
	return 0;
}

/* Replace S by S merged with K, then delete K.  0, or -1 with nothing
 * changed on disk. */
static int merge_into_successor(const struct kept *kf, const struct kept *sf)
{
	char kpath[4400], spath[4400], tmp[4400];
	struct map k, s;
	int rc = -1;

	hds_snapshot_name(kpath, "/heapdelta.", kf->seq, hd_trigger_name((uint64_t)kf->trigger), ".snap");
	hds_snapshot_name(spath, "/heapdelta.", sf->seq, hd_trigger_name((uint64_t)sf->trigger), ".snap");
	hds_snapshot_name(tmp, "/.heapdelta.", sf->seq, hd_trigger_name((uint64_t)sf->trigger), ".merge.tmp");
	if (map_file(kpath, &k) < 0)
		return -1;
	if (map_file(spath, &s) < 0) {
		munmap((void *)k.p, k.len);
		return -1;
	}
	/* Varint sums can grow by a byte a field: room for both files, doubled. */
	size_t cap = 2 * (k.len + s.len) + 4096;
	unsigned char *buf = hds_map(cap);
	size_t len = buf ? merge(&k, &s, buf) : 0;
	if (len) {
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			size_t done = 0;
			while (done < len) {
				ssize_t w = write(fd, buf + done, len - done);
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					break;
				done += (size_t)w;
			}
			if (close(fd) == 0 && done == len && rename(tmp, spath) == 0 && unlink(kpath) == 0)
				rc = 0;
			else
				unlink(tmp);
		}
	}
	if (buf)
		hds_unmap(buf, cap);
	munmap((void *)k.p, k.len);
	munmap((void *)s.p, s.len);
	return rc;
}

/* Merge away the interval snapshot between the first and the latest whose
 * neighbours are closest in time.  0, or -1 when there is none or the merge
 * failed (then thinning stops, with one warning). */
static int thin_one(void)
{
	uint32_t first = UINT32_MAX, last = 0, victim = UINT32_MAX;
	uint64_t best = UINT64_MAX;

	for (uint32_t i = 0; i < nfiles; i++)
		if (files[i].trigger == HD_TRIGGER_INTERVAL) {
			if (first == UINT32_MAX)
				first = i;
			last = i;
		}
	for (uint32_t i = first + 1; first != UINT32_MAX && i < last; i++) {
		if (files[i].trigger != HD_TRIGGER_INTERVAL)
			continue;
		uint64_t gap = files[i + 1].mono_ns - files[i - 1].mono_ns;
		if (gap < best) {
			best = gap;
			victim = i;
		}
	}
	if (victim == UINT32_MAX)
		return -1;
	if (merge_into_successor(&files[victim], &files[victim + 1]) < 0) {
		hds_warn("cannot thin the snapshots (HEAPDELTA_KEEP); keeping them all from here", NULL);
		gave_up = 1;
		return -1;
	}
	memmove(&files[victim], &files[victim + 1], sizeof *files * (nfiles - victim - 1));
	nfiles--;
	return 0;
}

static uint32_t intervals_on_disk(void)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < nfiles; i++)
		n += files[i].trigger == HD_TRIGGER_INTERVAL;
	return n;
}

void hds_thin_before_write(int trigger)
{
	if (!hds.cfg.keep || gave_up || !files || trigger != HD_TRIGGER_INTERVAL)
		return;
	/* Room first: at no moment are more than N on disk. */
	while (intervals_on_disk() >= hds.cfg.keep && thin_one() == 0)
		;
}

void hds_thin_after_write(int trigger, uint64_t seq)
{
	if (!hds.cfg.keep || gave_up)
		return;
	if (!files && !(files = hds_map(sizeof *files * MAX_KEPT))) {
		gave_up = 1;
		return;
	}
	if (nfiles == MAX_KEPT) {
		hds_warn("too many snapshots to thin; HEAPDELTA_KEEP stops here", NULL);
		gave_up = 1;
		return;
	}
	files[nfiles++] = (struct kept){ seq, hds_now_ns(CLOCK_MONOTONIC), trigger };
}
