/*
 * write_pprof.c - top's entries as a gzipped pprof profile (profile.proto),
 * for pprof, Pyroscope and Parca.  The only file that knows protobuf-c (the
 * encoder is generated from profile.proto) and zlib.
 */
#include "write.h"
#include "util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "profile.pb-c.h"

struct pprof {
	Perftools__Profiles__Profile p;
	struct strmap strings, functions, locations;
};

static int64_t str_index(struct pprof *pp, const char *s)
{
	int fresh;
	uint64_t idx = strmap_get(&pp->strings, s ? s : "", pp->p.n_string_table, &fresh);

	if (fresh) {
		pp->p.string_table = xrealloc(pp->p.string_table, (pp->p.n_string_table + 1) * sizeof *pp->p.string_table);
		pp->p.string_table[pp->p.n_string_table++] = xstrdup(s ? s : "");
	}
	return (int64_t)idx;
}

static Perftools__Profiles__ValueType *value_type(struct pprof *pp, const char *type, const char *unit)
{
	Perftools__Profiles__ValueType *v = xmalloc(sizeof *v);
	perftools__profiles__value_type__init(v);
	v->type = str_index(pp, type);
	v->unit = str_index(pp, unit);
	return v;
}

static uint64_t function_id(struct pprof *pp, const struct sym_frame *f)
{
	char *key = xasprintf("%s\x1f%s", f->function, f->file ? f->file : f->module);
	int fresh;
	uint64_t id = strmap_get(&pp->functions, key, pp->p.n_function + 1, &fresh);

	free(key);
	if (fresh) {
		Perftools__Profiles__Function *fn = xmalloc(sizeof *fn);
		perftools__profiles__function__init(fn);
		fn->id = id;
		fn->name = str_index(pp, f->function);
		fn->system_name = fn->name;
		fn->filename = str_index(pp, f->file ? f->file : f->module);
		pp->p.function = xrealloc(pp->p.function, (pp->p.n_function + 1) * sizeof *pp->p.function);
		pp->p.function[pp->p.n_function++] = fn;
	}
	return id;
}

/* The module of a symbolized frame: the one that covers its address and
 * bears its name. */
static const struct hd_module *module_named(const struct snapshot *s, const struct sym_frame *f)
{
	for (uint32_t i = 0; i < s->nmodules; i++) {
		const struct hd_module *m = &s->modules[i];
		const char *slash = strrchr(m->path, '/');
		if (strcmp(slash ? slash + 1 : m->path, f->module) != 0)
			continue;
		for (uint32_t k = 0; k < m->nseg; k++)
			if (f->address - m->seg[k].start < m->seg[k].size)
				return m;
	}
	return snapshot_module_of(s, f->address, 0);
}

/* The location of the frames tb[from .. to) (one return address: its
 * inlined functions, then the caller), by address. */
static uint64_t location_id(struct pprof *pp, const struct snapshot *s, const struct sym_frame *const *f, int n)
{
	int fresh;

	/* One address can be two locations: a module unloaded and another
	 * loaded at its place (the frame names its module). */
	char key[32 + 256];
	snprintf(key, sizeof key, "%" PRIx64 " %.255s", f[0]->address, f[0]->module);
	uint64_t id = strmap_get(&pp->locations, key, pp->p.n_location + 1, &fresh);
	if (!fresh)
		return id;
	Perftools__Profiles__Location *loc = xmalloc(sizeof *loc);
	perftools__profiles__location__init(loc);
	loc->id = id;
	loc->address = f[0]->address;
	const struct hd_module *m = module_named(s, f[0]);
	loc->mapping_id = m ? (uint64_t)(m - s->modules) + 1 : 0;
	loc->n_line = (size_t)n;
	loc->line = xcalloc((size_t)n, sizeof *loc->line);
	for (int i = 0; i < n; i++) {
		Perftools__Profiles__Line *line = xmalloc(sizeof *line);
		perftools__profiles__line__init(line);
		line->function_id = function_id(pp, f[i]);
		line->line = f[i]->line;
		loc->line[i] = line;
	}
	pp->p.location = xrealloc(pp->p.location, (pp->p.n_location + 1) * sizeof *pp->p.location);
	pp->p.location[pp->p.n_location++] = loc;
	return id;
}

static void add_mappings(struct pprof *pp, const struct snapshot *s)
{
	pp->p.n_mapping = s->nmodules;
	pp->p.mapping = xcalloc(s->nmodules + 1, sizeof *pp->p.mapping);
	for (uint32_t i = 0; i < s->nmodules; i++) {
		const struct hd_module *m = &s->modules[i];
		Perftools__Profiles__Mapping *map = xmalloc(sizeof *map);
		char id[2 * HD_MAX_BUILD_ID + 1] = "";
		perftools__profiles__mapping__init(map);
		map->id = i + 1;
		for (uint32_t k = 0; k < m->nseg; k++) {
			if (!map->memory_start || m->seg[k].start < map->memory_start) {
				map->memory_start = m->seg[k].start;
				map->file_offset = m->seg[k].offset;
			}
			if (m->seg[k].start + m->seg[k].size > map->memory_limit)
				map->memory_limit = m->seg[k].start + m->seg[k].size;
		}
		for (uint32_t k = 0; k < m->build_id_len; k++)
			snprintf(id + 2 * k, 3, "%02x", m->build_id[k]);
		map->filename = str_index(pp, m->flags & HD_MOD_VDSO ? "[vdso]" : m->path);
		map->build_id = str_index(pp, id);
		map->has_functions = map->has_filenames = map->has_line_numbers = map->has_inline_frames = 1;
		pp->p.mapping[i] = map;
	}
}

static int gzip_write(FILE *out, const uint8_t *data, size_t len)
{
	z_stream z;
	unsigned char buf[65536];
	int rc;

	memset(&z, 0, sizeof z);
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return error("cannot start gzip compression");
	z.next_in = (uint8_t *)data;
	z.avail_in = (uInt)len;
	do {
		z.next_out = buf;
		z.avail_out = sizeof buf;
		rc = deflate(&z, Z_FINISH);
		if (fwrite(buf, 1, sizeof buf - z.avail_out, out) != sizeof buf - z.avail_out) {
			deflateEnd(&z);
			return error("cannot write the profile");
		}
	} while (rc == Z_OK);
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : error("gzip compression failed");
}

int write_pprof(FILE *out, const struct stats *r)
{
	const struct snapshot *s = r->cur.snap;
	struct pprof pp;
	int rc;

	memset(&pp, 0, sizeof pp);
	perftools__profiles__profile__init(&pp.p);
	str_index(&pp, "");   /* string_table[0] */
	pp.p.n_sample_type = 4;
	pp.p.sample_type = xcalloc(4, sizeof *pp.p.sample_type);
	pp.p.sample_type[0] = value_type(&pp, "alloc_objects", "count");
	pp.p.sample_type[1] = value_type(&pp, "alloc_space", "bytes");
	pp.p.sample_type[2] = value_type(&pp, "inuse_objects", "count");
	pp.p.sample_type[3] = value_type(&pp, "inuse_space", "bytes");
	pp.p.default_sample_type = str_index(&pp, "inuse_space");
	pp.p.time_nanos = (int64_t)s->meta[HD_META_WALL_NS];
	pp.p.duration_nanos = (int64_t)(s->meta[HD_META_MONO_NS] - s->meta[HD_META_START_MONO_NS]);
	add_mappings(&pp, s);

	pp.p.sample = xcalloc(r->n + 1, sizeof *pp.p.sample);
	for (size_t i = 0; i < r->n; i++) {
		const struct stat_entry *e = r->entries[i];
		Perftools__Profiles__Sample *smp = xmalloc(sizeof *smp);
		perftools__profiles__sample__init(smp);
		smp->location_id = xcalloc((size_t)e->tb.n + 1, sizeof *smp->location_id);
		for (int k = 0; k < e->tb.n;) {
			int end = k + 1;
			while (end < e->tb.n && e->tb.frames[end]->address == e->tb.frames[k]->address)
				end++;
			smp->location_id[smp->n_location_id++] = location_id(&pp, s, e->tb.frames + k, end - k);
			k = end;
		}
		smp->n_value = 4;
		smp->value = xcalloc(4, sizeof *smp->value);
		smp->value[0] = e->alloc_count;
		smp->value[1] = e->alloc_size;
		smp->value[2] = e->count;
		smp->value[3] = e->size;
		pp.p.sample[pp.p.n_sample++] = smp;
	}

	size_t len = perftools__profiles__profile__get_packed_size(&pp.p);
	uint8_t *buf = xmalloc(len);
	perftools__profiles__profile__pack(&pp.p, buf);
	rc = gzip_write(out, buf, len);
	free(buf);

	/* The message owns plain malloc'ed parts: free them by hand. */
	for (size_t i = 0; i < pp.p.n_sample; i++) {
		free(pp.p.sample[i]->location_id);
		free(pp.p.sample[i]->value);
		free(pp.p.sample[i]);
	}
	for (size_t i = 0; i < pp.p.n_location; i++) {
		for (size_t k = 0; k < pp.p.location[i]->n_line; k++)
			free(pp.p.location[i]->line[k]);
		free(pp.p.location[i]->line);
		free(pp.p.location[i]);
	}
	for (size_t i = 0; i < pp.p.n_function; i++)
		free(pp.p.function[i]);
	for (size_t i = 0; i < pp.p.n_mapping; i++)
		free(pp.p.mapping[i]);
	for (size_t i = 0; i < pp.p.n_sample_type; i++)
		free(pp.p.sample_type[i]);
	for (size_t i = 0; i < pp.p.n_string_table; i++)
		free(pp.p.string_table[i]);
	free(pp.p.sample);
	free(pp.p.location);
	free(pp.p.function);
	free(pp.p.mapping);
	free(pp.p.sample_type);
	free(pp.p.string_table);
	strmap_release(&pp.strings);
	strmap_release(&pp.functions);
	strmap_release(&pp.locations);
	return rc;
}
