/* The x87 FPU: state helpers shared by the D8-DF handlers.  The only
 * state is cpu_state.fpu (the FXSAVE image); see docs/emu.md "x87". */
#ifndef VMON_EMU_X87_H
#define VMON_EMU_X87_H

#include "emu/exec_ops.h"

#define X87_FSW_IE 0x0001
#define X87_FSW_SF 0x0040
#define X87_FSW_ES 0x0080
#define X87_FSW_C1 0x0200
#define X87_FSW_TOP 0x3800
#define X87_FSW_B 0x8000
#define X87_FSW_FLAGS 0x007f   /* IE DE ZE OE UE PE SF */
#define X87_FCW_MASKS 0x003f
#define X87_FCW_INIT 0x037f

#define X87_TAG_VALID 0
#define X87_TAG_ZERO 1
#define X87_TAG_SPECIAL 2
#define X87_TAG_EMPTY 3

/* CR0.EM/TS -> #NM (a waiting FWAIT only with TS and MP). */
void x87_check_nm(struct emu_cpu *c, bool is_wait);

/* A waiting instruction with an unmasked exception pending (FSW.ES):
 * #MF when CR0.NE; with NE clear the FERR#/IGNNE# pins are not modelled
 * and execution continues. */
void x87_check_pending(struct emu_cpu *c);

/* ES and B follow the unmasked exception flags (FLDCW, FLDENV, FRSTOR and
 * arithmetic all recompute them, as the hardware does). */
uint16_t x87_fsw_summary(uint16_t fsw, uint16_t fcw);

/* Set FSW; st[] is ordered by ST(i), so a new TOP rotates it to keep the
 * physical registers where they are. */
void x87_set_fsw(struct x86_fxsave *f, uint16_t fsw);

/* The full 2-bit tag word computed from the register contents and the
 * abridged FTW (physical register order, as FNSTENV stores it). */
uint16_t x87_full_tags(const struct x86_fxsave *f);

/* Abridged FTW from a full tag word: a register is valid unless 11b. */
uint8_t x87_abridged_tags(uint16_t full);

/* Real mode and virtual-8086 mode use the real-mode environment layouts
 * and linear FIP/FDP. */
bool x87_real_format(const struct emu_cpu *c);

/* FIP/FOP (and FDP for a memory operand) after a non-control instruction. */
void x87_record(struct emu_cpu *c, const struct emu_insn *i);

/* Run D8-DF instruction (op, modrm) on the host's x87 with the guest's
 * registers, FCW, TOP, tags and condition codes loaded, then fold the
 * outcome back into cpu_state.fpu.  A memory form addresses the host
 * buffer mem (its ModRM.reg selects the operation).  With use_flags the
 * guest's arithmetic RFLAGS go in (FCMOVcc) and come back (FCOMI). */
void x87_host_exec(struct emu_cpu *c, uint8_t op, uint8_t modrm, void *mem, bool use_flags);

/* FNSTENV/FLDENV/FNSAVE/FRSTOR/FLDCW/FNSTCW/FNSTSW/FNINIT/FNCLEX. */
bool x87_exec_control(struct emu_cpu *c, const struct emu_insn *i);

#endif
