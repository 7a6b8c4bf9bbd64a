/* Segment register loads (descriptor tables, hidden parts, checks). */
#ifndef VMON_EMU_SEG_H
#define VMON_EMU_SEG_H

#include "emu/emu_int.h"

/* Load data/stack segment register sr (not CS) with selector sel as
 * MOV/POP would; raises #GP/#NP/#SS with the selector as error code. */
void emu_load_seg(struct emu_cpu *c, unsigned sr, uint16_t sel);
/* Read the 8-byte descriptor for sel from the GDT or LDT; raises
 * #GP(sel) if it lies beyond the table limit. */
uint64_t emu_read_descriptor(struct emu_cpu *c, uint16_t sel, uint64_t *la_out);
/* Descriptor-table, TSS and IDT accesses are supervisor accesses even at
 * CPL 3 (SDM 4.6: implicit supervisor-mode accesses). */
uint64_t emu_sys_read(struct emu_cpu *c, uint64_t la, unsigned size);
void emu_sys_write(struct emu_cpu *c, uint64_t la, unsigned size, uint64_t v);
/* A segment register as virtual-8086 mode loads it: base = sel << 4,
 * 64 KiB limit, DPL 3, 16-bit, present. */
void emu_seg_vm86(struct x86_segment *sg, uint16_t sel, bool code);
/* Expand a descriptor into the hidden part of a segment register. */
void emu_seg_from_desc(struct x86_segment *sg, uint16_t sel, uint64_t d);

/* Read the current TSS at off (the TSS limit checked: #TS(TR | ext)). */
uint64_t emu_tss_read(struct emu_cpu *c, unsigned off, unsigned size, uint32_t ext);

/* Returning to an outer privilege (IRET, far RET): check the new SS for
 * privilege rpl and return its descriptor (0: a null SS, allowed only for
 * a return to 64-bit code at rpl < 3); then load it at that CPL; then the
 * data segments the new CPL may not use become null. */
uint64_t emu_ret_ss_desc(struct emu_cpu *c, uint16_t sel, unsigned rpl, bool to_64bit);
void emu_load_ss_checked(struct emu_cpu *c, uint16_t sel, uint64_t d, unsigned cpl);
void emu_null_inaccessible_segs(struct emu_cpu *c);

#endif
