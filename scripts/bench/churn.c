/*
 * churn.c - the benchmark's synthetic workload: THREADS threads allocate
 * and free blocks of varied sizes at recursion depths that vary from 5 to
 * 40 frames, keeping a window of live blocks.  The benchmark builds it
 * twice, with and without frame pointers.
 *
 *   churn [ITERATIONS_PER_THREAD] [THREADS]   (defaults 1500000, 2)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 4096

/* The fields a thread writes on every iteration come first and the array
 * ends with a cache line of padding, so neighbouring workers (one calloc)
 * share no cache line: the untraced baseline measures allocation, not
 * false sharing. */
struct worker {
	unsigned long iters;
	unsigned seed;
	unsigned long checksum;
	void *window[WINDOW];
	char pad[64];
};

static __attribute__((noinline)) void *leaf_alloc(struct worker *w)
{
	w->seed = w->seed * 1103515245u + 12345u;
	unsigned r = w->seed >> 8;
	size_t size = r % 16 == 0 ? 4096 + r % 65536 : 16 + r % 512;
	char *p = malloc(size);
	p[0] = (char)r;
	return p;
}

static __attribute__((noinline)) void *descend(struct worker *w, int depth)
{
	if (depth == 0)
		return leaf_alloc(w);
	void *p = descend(w, depth - 1);
	__asm__ volatile("" ::: "memory");   /* keep the recursion a real one */
	return p;
}

static void *run(void *arg)
{
	struct worker *w = arg;

	for (unsigned long i = 0; i < w->iters; i++) {
		int depth = 5 + (int)((w->seed >> 4) % 36);
		void *p = descend(w, depth);
		unsigned slot = (w->seed >> 12) % WINDOW;
		if (w->window[slot]) {
			w->checksum += *(unsigned char *)w->window[slot];
			free(w->window[slot]);
		}
		w->window[slot] = p;
	}
	for (int i = 0; i < WINDOW; i++)
		free(w->window[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long iters = argc > 1 ? strtoul(argv[1], NULL, 10) : 1500000;
	int threads = argc > 2 ? atoi(argv[2]) : 2;
	pthread_t th[64];
	struct worker *w = calloc((size_t)threads, sizeof *w);
	unsigned long sum = 0;

	if (threads < 1 || threads > 64)
		return 2;
	for (int t = 0; t < threads; t++) {
		w[t].iters = iters;
		w[t].seed = 12345u + (unsigned)t * 7919u;
		pthread_create(&th[t], NULL, run, &w[t]);
	}
	for (int t = 0; t < threads; t++) {
		pthread_join(th[t], NULL);
		sum += w[t].checksum;
	}
	printf("churn: %d threads x %lu iterations, checksum %lu\n", threads, iters, sum);
	free(w);
	return 0;
}
