/* The ACPI fixed-hardware block the FADT describes (hw/pm.c). */
#ifndef VMON_HW_PM_H
#define VMON_HW_PM_H

#define PM_IO_BASE 0x600
#define PM1A_EVT_BLK (PM_IO_BASE + 0x00)  /* PM1 status (16) + enable (16) */
#define PM1A_EVT_LEN 4
#define PM1A_CNT_BLK (PM_IO_BASE + 0x04)  /* PM1 control (16) */
#define PM1A_CNT_LEN 2
#define PM_TMR_BLK (PM_IO_BASE + 0x08)    /* 24-bit PM timer (32) */
#define PM_TMR_LEN 4
#define PM_IO_LEN 0x0c
#define PM_SCI_IRQ 9
#define PM_TIMER_HZ 3579545ULL

/* SLP_TYP for \_S5 in the DSDT; 0 as with QEMU's PIIX4, so guests that
 * hard-code "outw(0x604, 0x2000)" power off too. */
#define PM_SLP_TYP_S5 0

/* The reset register (PIIX3 reset control, port 0xcf9) lives in the PCI
 * host's 0xcf8 dword (hw/pci.c): the FADT points at it. */
#define PM_RESET_PORT 0xcf9
#define PM_RESET_VALUE 0x06

struct machine;
/* Press the ACPI fixed-feature power button (QMP system_powerdown): sets
 * PWRBTN_STS and raises the SCI if the guest enabled it.  Returns -ENODEV
 * when the machine has no PM block. */
int pm_power_button(struct machine *m);

#endif
