/*
 * arch.h - everything in the shim that differs between the architectures
 * it runs on: x86-64 and aarch64 (Linux, LP64, glibc).  Included by
 * internal.h; nothing else in the shim tests __x86_64__ or __aarch64__.
 *
 * What differs:
 *  - DWARF register numbers of the frame pointer, the stack pointer and
 *    the return-address column, and the rule a CIE starts from: on x86-64
 *    `call` pushed the return address (CFA = rsp + 8, RA at CFA - 8); on
 *    aarch64 `bl` left it in x30, the link register (CFA = sp, RA = x30
 *    until the function saves it);
 *  - where the cfi unwinder starts (HDS_WALK_START): on x86-64 from the
 *    interposed function's frame, whose layout the entry points fix (they
 *    keep a frame pointer: [rbp] the caller's rbp, [rbp+8] the return
 *    address, the caller's rsp = rbp + 16); on aarch64 a frame record
 *    ([x29] the caller's x29, [x29+8] the saved x30) sits anywhere in its
 *    frame, usually at the bottom, so the caller's sp cannot be derived
 *    from x29: the walk starts from its own registers (pc, sp, x29, x30
 *    read in one asm statement, so they describe one instruction) and
 *    steps through the shim's frames with their CFI like any other;
 *    capture.c drops the shim's frames afterwards, as it always did;
 *  - glibc's symbol versions (GLIBC_2.2.5 on x86-64, GLIBC_2.17 on
 *    aarch64), which init.c asks dlvsym for;
 *  - return-address signing: aarch64 code built with
 *    -mbranch-protection=pac-ret stores x30 signed (a PAC in its top bits);
 *    every return address read from the stack or a register is stripped
 *    with XPACLRI (in the hint space: a no-op on cores, and emulators,
 *    without pointer authentication) before it is recorded, compared or
 *    looked up.  DW_CFA_AARCH64_negate_ra_state only says whether the
 *    saved value is signed: with every value stripped it changes nothing.
 *
 *  - restartable sequences: total.c's per-CPU slot update is x86-64
 *    assembly (HDS_ARCH_RSEQ); aarch64 takes the shared word every time;
 *
 *  - aarch64 signal trampolines without CFI: the kernel's (in the vDSO)
 *    has CFI marking a signal frame, qemu-user's has none at all; an
 *    address without CFI holding rt_sigreturn's two instructions
 *    (HDS_SIGRETURN_INSN0/1) is taken for one (cfi.c).  x86-64's
 *    trampoline is glibc's __restore_rt, which has CFI.
 *
 * The frame-pointer chain has the same shape on both ([fp] the caller's
 * fp, [fp+8] the return address), so fp_walk, and the cfi unwinder's steps
 * through code without CFI (JIT code), need nothing from here but the
 * strip.
 */
#ifndef HDS_ARCH_H
#define HDS_ARCH_H

#include <stdint.h>

#if defined(__x86_64__)

#define HDS_ARCH_NAME      "x86_64"
#define HDS_DW_FP          6     /* rbp */
#define HDS_DW_SP          7     /* rsp: the CFA by definition */
#define HDS_DW_RA          16    /* the return-address column */
#define HDS_CIE_CFA_OFF    8     /* CFA = rsp + 8 at a function's first instruction */
#define HDS_CIE_RA_ON_STACK 1    /* ... and the return address at CFA - 8 */
#define HDS_ARCH_PAC       0     /* no return-address signing */
/* glibc's symbol versions of the allocation functions (init.c). */
#define HDS_GLIBC_BASE     "GLIBC_2.2.5"
#define HDS_GLIBC_ALIGNED  "GLIBC_2.16"   /* aligned_alloc */
/* A packed rule (internal.h): bits 0-4 flags, then RA and fp offsets from
 * the CFA in 8-byte units, and the CFA offset in bytes. */
#define HDS_RULE_RA_SHIFT  16
#define HDS_RULE_RA_BITS   8
#define HDS_RULE_FP_SHIFT  24
#define HDS_RULE_FP_BITS   8
#define HDS_RULE_CFA_SHIFT 32
#define HDS_RULE_CFA_BITS  32

/* Where the cfi walk starts: the caller of the interposed function whose
 * frame is `entry`.  Sets lo (the lowest stack address it may read: our
 * own frame), ip, sp, fp and lr; evaluates to 0, or -1 when the frame is
 * outside [lo, hi). */
#define HDS_WALK_START(entry, hi, lo, ip, sp, fp, lr) ({                                  \
	(lo) = (uint64_t)__builtin_frame_address(0);                                        \
	int ok_ = (hi) >= (lo) + 16 && (uint64_t)(entry) >= (lo) && (uint64_t)(entry) <= (hi) - 16; \
	if (ok_) {                                                                          \
		(ip) = (entry)[1];                                                          \
		(sp) = (uint64_t)(entry) + 16;                                              \
		(fp) = (entry)[0];                                                          \
		(lr) = 0;                                                                   \
	}                                                                                   \
	ok_ ? 0 : -1;                                                                       \
})

static inline uint64_t hds_strip_ra(uint64_t ra)
{
	return ra;
}

/* A frame as libunwind's unw_backtrace gave it, as our unwinders give it. */
static inline uint64_t hds_from_libunwind(uint64_t ra)
{
	return ra;
}

/*
 * Restartable sequences (total.c).  Add -d to the headroom in this CPU's
 * slot, if W's mode is 0 (lease) and the result is in [0, 2^HDS_TOTAL_CAP_SHIFT):
 * returns 1
 * when done, 0 when the caller must take the slow path.  The critical
 * section (1: to 2:) reads the CPU number glibc's rseq area holds, W and
 * the slot, and commits with its one store; the kernel sends a thread that
 * is preempted, migrated or signalled inside it to the abort handler (4:),
 * which glibc's signature (RSEQ_SIG, 0x53053053, behind a ud1 opcode so
 * disassemblers stay in step) must precede.  `off` is __rseq_offset, the
 * area's place from the thread pointer; rseq_cs (at 8) is left set, as
 * the ABI allows.  The first store is to that area: only called once
 * glibc's registration was found (total.c).  A thread glibc did not
 * register reads cpu_id -1 or -2: not below nslots.
 */
#define HDS_ARCH_RSEQ 1
#ifndef HDS_TOTAL_CAP_SHIFT
#define HDS_TOTAL_CAP_SHIFT 16   /* a slot holds less than 64 KiB of headroom */
#endif
static inline int hds_rseq_slot_add(long off, void *slots, uint32_t nslots, const void *w, int64_t d)
{
	__asm__ goto(
		".pushsection __rseq_cs, \"aw\"\n\t"
		".balign 32\n"
		"3:\n\t"
		".long 0, 0\n\t"
		".quad 1f, 2f - 1f, 4f\n\t"
		".popsection\n\t"
		"leaq 3b(%%rip), %%rax\n\t"
		"movq %%rax, %%fs:8(%[off])\n"
		"1:\n\t"
		"movl %%fs:4(%[off]), %%eax\n\t"
		"cmpl %[n], %%eax\n\t"
		"jae %l[slow]\n\t"
		"shlq $6, %%rax\n\t"
		"addq %[slots], %%rax\n\t"
		"movq (%[w]), %%rcx\n\t"
		"shrq $48, %%rcx\n\t"
		"shlq $48, %%rcx\n\t"
		"movq (%%rax), %%rdx\n\t"
		"subq %%rcx, %%rdx\n\t"
		"subq %[d], %%rdx\n\t"
		"movq %%rdx, %%rcx\n\t"
		"shrq %[cap], %%rcx\n\t"
		"jnz %l[slow]\n\t"
		"movq %%rdx, (%%rax)\n"
		"2:\n\t"
		".pushsection __rseq_failure, \"ax\"\n\t"
		".byte 0x0f, 0xb9, 0x3d\n\t"
		".long 0x53053053\n"
		"4:\n\t"
		"jmp %l[slow]\n\t"
		".popsection"
		: : [off] "r"(off), [slots] "r"(slots), [n] "r"(nslots), [w] "r"(w), [d] "r"(d), [cap] "i"(HDS_TOTAL_CAP_SHIFT)
		: "rax", "rcx", "rdx", "memory", "cc" : slow);
	return 1;
slow:
	return 0;
}

#elif defined(__aarch64__)

#define HDS_ARCH_NAME      "aarch64"
#define HDS_DW_FP          29    /* x29 */
#define HDS_DW_SP          31    /* sp: the CFA by definition */
#define HDS_DW_RA          30    /* x30, the link register */
#define HDS_CIE_CFA_OFF    0     /* CFA = sp at a function's first instruction */
#define HDS_CIE_RA_ON_STACK 0    /* ... and the return address still in x30 */
#define HDS_ARCH_PAC       1
#define HDS_GLIBC_BASE     "GLIBC_2.17"  /* the first glibc for aarch64 */
#define HDS_GLIBC_ALIGNED  "GLIBC_2.17"
#define HDS_DW_CFA_NEGATE_RA_STATE 0x2d   /* DW_CFA_AARCH64_negate_ra_state */
#define HDS_SIGRETURN_INSN0 UINT32_C(0xd2801168)   /* mov x8, #139 (__NR_rt_sigreturn) */
#define HDS_SIGRETURN_INSN1 UINT32_C(0xd4000001)   /* svc #0 */
/* The frame record is at the bottom of the frame: x29 and x30 are saved
 * as far below the CFA as the frame is big (the shim's own capture frame:
 * 4.4 KB), so their offsets get 14 bits (in 8-byte units: 64 KiB). */
#define HDS_RULE_RA_SHIFT  5
#define HDS_RULE_RA_BITS   14
#define HDS_RULE_FP_SHIFT  19
#define HDS_RULE_FP_BITS   14
#define HDS_RULE_CFA_SHIFT 33
#define HDS_RULE_CFA_BITS  31

/* The walk starts here, in the function that expands this: pc, sp, x29
 * and x30 at one instruction.  ip is that pc + 4, so that ip - 1 (the
 * address rules are looked up at, as for a return address) lies in the
 * same instruction.  The shim's own frames are walked, then dropped by
 * capture.c.  `entry` is not needed: its frame is one of those walked. */
#define HDS_WALK_START(entry, hi, lo, ip, sp, fp, lr) ({                                  \
	uint64_t pc_, sp_, fp_, lr_;                                                        \
	(void)(entry);                                                                      \
	__asm__ volatile("adr %0, .\n\tmov %1, sp\n\tmov %2, x29\n\tmov %3, x30"            \
			 : "=r"(pc_), "=r"(sp_), "=r"(fp_), "=r"(lr_));                      \
	(lo) = sp_;                                                                         \
	(ip) = pc_ + 4;                                                                     \
	(sp) = sp_;                                                                         \
	(fp) = fp_;                                                                         \
	(lr) = lr_;                                                                         \
	(hi) >= (lo) + 16 ? 0 : -1;                                                         \
})

/* A return address without its pointer-authentication code: XPACLRI
 * (hint #7) strips x30 in place, and is a no-op without PAC. */
static inline uint64_t hds_strip_ra(uint64_t ra)
{
	register uint64_t x30 __asm__("x30") = ra;

	__asm__("hint #7" : "+r"(x30));
	return x30;
}

/* A frame as libunwind's unw_backtrace gave it, as our unwinders give it:
 * libunwind 1.6 on aarch64 gives every return address minus 1 (measured:
 * each frame, under qemu); instructions are 4-byte aligned, so rounding
 * up gives the return address back whether it subtracted or not. */
static inline uint64_t hds_from_libunwind(uint64_t ra)
{
	return (hds_strip_ra(ra) + 3) & ~UINT64_C(3);
}

/* total.c's per-CPU slots are x86-64 only: every update takes the shared
 * word (exact, and what the leases spare x86-64). */
#define HDS_ARCH_RSEQ 0

#else
#error "heapdelta's shim supports x86-64 and aarch64 Linux"
#endif

#endif /* HDS_ARCH_H */
