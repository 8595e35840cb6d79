/*
 * fuzz_reader.c - libFuzzer target for the snapshot reader.  Any input must
 * end in success or a clean error; the sanitizers catch everything else.
 * Seeds: tests/fuzz/corpus/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "snapshot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int quiet;
	struct snapshot s;

	if (!quiet) {
		/* Errors are expected by the thousand: keep stderr readable. */
		if (!freopen("/dev/null", "w", stderr))
			return 0;
		quiet = 1;
	}
	snapshot_parse("fuzz", data, size, &s);
	snapshot_release(&s);
	return 0;
}
