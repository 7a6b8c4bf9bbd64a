/* Instruction handlers named by the opcode tables (emu/optab.c). */
#ifndef VMON_EMU_EXEC_H
#define VMON_EMU_EXEC_H

#include "emu/emu_int.h"

#define EMU_HANDLER(name) void name(struct emu_cpu *c, const struct emu_insn *i)

/* exec_alu.c: arithmetic, logic, multiply/divide, shifts, bit ops. */
EMU_HANDLER(exec_alu_EG);
EMU_HANDLER(exec_alu_GE);
EMU_HANDLER(exec_alu_AI);
EMU_HANDLER(exec_alu_EI);
EMU_HANDLER(exec_test_EG);
EMU_HANDLER(exec_test_AI);
EMU_HANDLER(exec_test_EI);
EMU_HANDLER(exec_not);
EMU_HANDLER(exec_neg);
EMU_HANDLER(exec_mul);
EMU_HANDLER(exec_imul1);
EMU_HANDLER(exec_div);
EMU_HANDLER(exec_idiv);
EMU_HANDLER(exec_imul_GE);
EMU_HANDLER(exec_imul_GEI);
EMU_HANDLER(exec_inc_E);
EMU_HANDLER(exec_dec_E);
EMU_HANDLER(exec_incdec_r);
EMU_HANDLER(exec_shift);
EMU_HANDLER(exec_shld);
EMU_HANDLER(exec_shrd);
EMU_HANDLER(exec_bt_EG);
EMU_HANDLER(exec_bt_EI);
EMU_HANDLER(exec_bsf);
EMU_HANDLER(exec_bsr);
EMU_HANDLER(exec_popcnt);
EMU_HANDLER(exec_xadd);
EMU_HANDLER(exec_cmpxchg);
EMU_HANDLER(exec_cmpxchg8b);
EMU_HANDLER(exec_bswap);

/* exec_move.c: data movement, stack, flags, strings. */
EMU_HANDLER(exec_mov_EG);
EMU_HANDLER(exec_mov_GE);
EMU_HANDLER(exec_mov_EI);
EMU_HANDLER(exec_mov_rI);
EMU_HANDLER(exec_mov_moffs);
EMU_HANDLER(exec_mov_E_sreg);
EMU_HANDLER(exec_mov_sreg_E);
EMU_HANDLER(exec_movzx);
EMU_HANDLER(exec_movsx);
EMU_HANDLER(exec_movsxd);
EMU_HANDLER(exec_lea);
EMU_HANDLER(exec_xchg_EG);
EMU_HANDLER(exec_xchg_acc);
EMU_HANDLER(exec_cmov);
EMU_HANDLER(exec_setcc);
EMU_HANDLER(exec_push_r);
EMU_HANDLER(exec_pop_r);
EMU_HANDLER(exec_push_imm);
EMU_HANDLER(exec_push_E);
EMU_HANDLER(exec_pop_E);
EMU_HANDLER(exec_push_sreg);
EMU_HANDLER(exec_pop_sreg);
EMU_HANDLER(exec_enter);
EMU_HANDLER(exec_leave);
EMU_HANDLER(exec_cbw);
EMU_HANDLER(exec_cwd);
EMU_HANDLER(exec_pushf);
EMU_HANDLER(exec_popf);
EMU_HANDLER(exec_sahf);
EMU_HANDLER(exec_lahf);
EMU_HANDLER(exec_flagop);
EMU_HANDLER(exec_xlat);
EMU_HANDLER(exec_nop);
EMU_HANDLER(exec_hint_nop);
EMU_HANDLER(exec_movs);
EMU_HANDLER(exec_cmps);
EMU_HANDLER(exec_stos);
EMU_HANDLER(exec_lods);
EMU_HANDLER(exec_scas);

/* exec_ctl.c: control transfer. */
EMU_HANDLER(exec_jcc);
EMU_HANDLER(exec_jmp_rel);
EMU_HANDLER(exec_call_rel);
EMU_HANDLER(exec_jmp_E);
EMU_HANDLER(exec_call_E);
EMU_HANDLER(exec_ret);
EMU_HANDLER(exec_loop);
EMU_HANDLER(exec_jrcxz);
EMU_HANDLER(exec_int3);
EMU_HANDLER(exec_int);
EMU_HANDLER(exec_into);

/* intr.c */
EMU_HANDLER(exec_iret);

/* exec_priv.c */
EMU_HANDLER(exec_mov_cr);
EMU_HANDLER(exec_mov_dr);
EMU_HANDLER(exec_clts);
EMU_HANDLER(exec_wbinvd);
EMU_HANDLER(exec_grp6);
EMU_HANDLER(exec_grp7);
EMU_HANDLER(exec_rdmsr);
EMU_HANDLER(exec_wrmsr);
EMU_HANDLER(exec_syscall);
EMU_HANDLER(exec_sysret);
EMU_HANDLER(exec_jmp_far);
EMU_HANDLER(exec_call_far);
EMU_HANDLER(exec_retf);
EMU_HANDLER(exec_far_E);
EMU_HANDLER(exec_rdtscp);

/* exec_sse.c */
EMU_HANDLER(exec_sse);

/* exec_fpu.c */
EMU_HANDLER(exec_fwait);
EMU_HANDLER(exec_x87);
bool emu_exec_fxsave_group(struct emu_cpu *c, const struct emu_insn *i);

/* exec_sys.c: system and I/O instructions. */
EMU_HANDLER(exec_hlt);
EMU_HANDLER(exec_cli);
EMU_HANDLER(exec_sti);
EMU_HANDLER(exec_cpuid);
EMU_HANDLER(exec_rdtsc);
EMU_HANDLER(exec_in);
EMU_HANDLER(exec_out);
EMU_HANDLER(exec_ins);
EMU_HANDLER(exec_outs);
EMU_HANDLER(exec_pusha);
EMU_HANDLER(exec_popa);
EMU_HANDLER(exec_lxs);
EMU_HANDLER(exec_icebp);
EMU_HANDLER(exec_ud2);
EMU_HANDLER(exec_grp15);

#endif
