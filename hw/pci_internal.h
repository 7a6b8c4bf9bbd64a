/* Shared between the PCI bus (hw/pci.c) and its MSI-X support
 * (hw/pci_msix.c); devices use hw/pci.h only. */
#ifndef VMON_HW_PCI_INTERNAL_H
#define VMON_HW_PCI_INTERNAL_H

#include "hw/pci.h"

struct pci_bus {
    struct machine *m;
    uint32_t config_address;
    uint8_t reset_control;         /* PIIX3 RCR at 0xcf9 */
    struct pci_device *slots[PCI_MAX_SLOTS];   /* function 0 only */
    int intx_count[4];             /* asserted INTx inputs per GSI */
    struct pci_device host;
};

/* After any configuration write (an unmask may release pending vectors),
 * and at reset (table masked, nothing pending). */
void pci_msix_config_written(struct pci_device *d);
void pci_msix_reset(struct pci_device *d);

#endif
