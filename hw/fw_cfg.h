/* QEMU's fw_cfg, traditional (port) interface: selector 0x510 (16-bit
 * write), data 0x511 (8-bit reads).  No DMA interface. */
#ifndef VMON_HW_FW_CFG_H
#define VMON_HW_FW_CFG_H

#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511

#define FW_CFG_SIGNATURE 0x0000
#define FW_CFG_ID 0x0001
#define FW_CFG_UUID 0x0002
#define FW_CFG_RAM_SIZE 0x0003
#define FW_CFG_NB_CPUS 0x0005
#define FW_CFG_MAX_CPUS 0x000f
#define FW_CFG_FILE_DIR 0x0019
#define FW_CFG_FILE_FIRST 0x0020

#define FW_CFG_MAX_FILE_NAME 56

#endif
