/*
 * taskd.c - a small server-like program with the classic slow leak: every
 * task it finishes goes into a "finished" list that nothing ever prunes.
 * It also has a cache that fills up and then stays flat, and per-request
 * scratch buffers that are freed.  heapdelta's demo runs it with periodic
 * snapshots; `heapdelta diff` of the first and last points at the leak.
 *
 *   taskd [SECONDS]   (default 3)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct task {
	unsigned id;
	char *payload;
	struct task *next;
};

struct cache_entry {
	char key[32];
	char *value;
};

#define CACHE_SLOTS 256

static struct task *finished;          /* grows forever: the leak */
static struct cache_entry *cache[CACHE_SLOTS];

static struct task *task_new(unsigned id)
{
	struct task *t = malloc(sizeof *t);
	t->id = id;
	t->payload = malloc(200 + id % 56);
	memset(t->payload, 'x', 200 + id % 56);
	return t;
}

static void task_finish(struct task *t)
{
	t->next = finished;        /* kept "for statistics", never pruned */
	finished = t;
}

static void cache_put(unsigned id)
{
	unsigned slot = id % CACHE_SLOTS;

	if (!cache[slot]) {
		cache[slot] = malloc(sizeof *cache[slot]);
		cache[slot]->value = malloc(1024);
	}
	snprintf(cache[slot]->key, sizeof cache[slot]->key, "task-%u", id);
}

static unsigned handle_request(unsigned id)
{
	char *scratch = malloc(4096);
	unsigned sum = 0;

	snprintf(scratch, 4096, "request %u", id);
	for (char *c = scratch; *c; c++)
		sum += (unsigned char)*c;
	free(scratch);

	struct task *t = task_new(id);
	cache_put(id);
	task_finish(t);
	return sum;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3.0;
	double end = now() + seconds;
	unsigned id = 0, check = 0;

	while (now() < end) {
		for (int i = 0; i < 100; i++)
			check += handle_request(id++);
		struct timespec pause = { 0, 2000000 };
		nanosleep(&pause, NULL);
	}
	printf("taskd: handled %u requests (checksum %u)\n", id, check);
	return 0;
}
