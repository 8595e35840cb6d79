/*
 * fuzz_reader.c - libFuzzer target for the snapshot reader.  Any input must
 * end in success or a clean error; the sanitizers catch everything else.
 * Seeds: tests/fuzz/corpus/.  Run with -close_fd_mask=2: every rejected
 * input prints its one-line error, and libFuzzer keeps its own reports.
 */
#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snapshot s;

	snapshot_parse("fuzz", data, size, &s);
	snapshot_release(&s);
	return 0;
}
