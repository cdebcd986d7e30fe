/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * cm: the user-space interface of the cm card's host driver (hostdriver/cm_drv.c), /dev/cmN.
 *
 * One character device per card. What a process does with it:
 *   - mmap(0, bus memory size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0): the card's bus memory (BAR2;
 *     layout in cm/bus_abi.h). The data path (rings, slots) then needs no system call.
 *   - CM_IOC_ATTACH / CM_IOC_DETACH: take and give back queue pairs. Queue pairs still attached when the
 *     file is closed (including when the process dies) are released by the driver.
 *   - poll()/select()/epoll: EPOLLIN when an attached queue pair's event ring has events (eq_prod != the
 *     host's eq_cons); EPOLLERR when the card is gone or one of them faulted. Interrupt driven (MSI-X) when
 *     the card has vectors, else a timer re-checks the event rings (module parameters poll_interval_ms,
 *     poll_interval_us).
 *   - CM_IOC_WAIT: the same with a timeout, for one queue pair or any.
 *   - CM_IOC_DOORBELL: wake the card for a queue pair's new submissions (when the card has doorbells).
 *
 * Every ioctl returns 0 or -1 with errno; an unknown command fails with ENOTTY. Arguments use fixed-width
 * fields and explicit padding; padding, reserved fields and undefined flags must be zero (else EINVAL),
 * so they can be given a meaning later.
 *
 * Ioctl type 0xCB (not registered in Documentation/userspace-api/ioctl/ioctl-number.rst yet).
 */
#ifndef _UAPI_LINUX_CM_H
#define _UAPI_LINUX_CM_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CM_IOC_TYPE 0xCB
#define CM_ATTACH_MAX 8            /* queue pairs per CM_IOC_ATTACH (= CM_BUS_ATTACH_MAX) */
#define CM_WAIT_ANY 0xffffffffU    /* cm_wait.qp: any of this file's queue pairs */

/* cm_info.flags */
#define CM_INFO_F_MSIX (1U << 0)   /* notifications are MSI-X interrupts (else the polling timer) */
#define CM_INFO_F_EMULATED (1U << 1) /* the emulated card behind QEMU's ivshmem device */
#define CM_INFO_F_DOORBELL (1U << 2) /* the card takes doorbells (CM_IOC_DOORBELL): ivshmem-doorbell */

/* CM_IOC_INFO: what the card is (copied from the validated control block) and how to map it. */
struct cm_info {
	__u32 abi_version;         /* the card's CM_BUS_ABI_VERSION */
	__u32 fw_version;          /* major << 16 | minor << 8 | patch */
	__u32 fw_state;            /* CM_BUS_FW_* now */
	__u32 flags;               /* CM_INFO_F_* */
	__u64 map_size;            /* bytes mmap() may map from offset 0 (the bus memory's total_size) */
	__u64 format_id;           /* changes every time the card formats the memory */
	__u64 heartbeat;           /* the card's heartbeat counter now */
	__u32 qp_count;            /* queue pairs of the card */
	__u32 qp_host;             /* queue pairs the card lent to this host (the driver hands them out) */
	__u32 qp_free;             /* of those, not attached by any file now */
	__u32 slot_size;
	__u32 slots_per_qp;
	__u32 conn_credit;
	__u8 fw_version_str[32];   /* NUL-terminated */
};

/*
 * CM_IOC_ATTACH: attach 1..CM_ATTACH_MAX queue pairs to this file. ENOSPC: none free. Queue pairs released a
 * moment ago (their file was closed, their process died) are not handed out until the card has reset their
 * connections and lent them again (bus ABI 1.2); ATTACH first waits for those, at most 1 s (EINTR).
 */
struct cm_attach {
	__u32 count;               /* in: queue pairs wanted */
	__u32 flags;               /* in: zero */
	__u32 attached;            /* out: how many were attached (>= 1 on success) */
	__u32 pad;                 /* zero */
	__u32 qps[CM_ATTACH_MAX];  /* out: their indices */
};

/* CM_IOC_DETACH: give back a queue pair of this file (the card resets its connections). EINVAL: not this
 * file's. */
struct cm_detach {
	__u32 qp;
	__u32 flags;               /* zero */
};

/*
 * CM_IOC_WAIT: sleep until queue pair `qp` of this file (or any: CM_WAIT_ANY) has events, at most
 * timeout_ms (0: do not sleep). 0 and `ready` set; ETIMEDOUT; EINTR; EIO when the queue pair faulted or
 * the card stopped; EINVAL for a queue pair that is not this file's or a file without queue pairs.
 */
struct cm_wait {
	__u32 qp;                  /* in */
	__u32 timeout_ms;          /* in: at most CM_WAIT_MAX_MS */
	__u32 flags;               /* in: zero */
	__u32 ready;               /* out: a queue pair with events */
};
#define CM_WAIT_MAX_MS 600000U

/*
 * CM_IOC_FW_LOAD: write a firmware image (cmflash build; docs/image.md) into the card's flash (CAP_SYS_ADMIN).
 * The driver sends it through the card's firmware-load window (docs/bus.md "Firmware load"); the card checks
 * the whole image (structure, payload SHA-256, architecture) and writes it into its inactive flash slot, on
 * trial from its next boot (the running slot is never written). The signature is not checked here: verify
 * the image first (cmflash write --key); the card's boot ROM checks it at every boot and boots the other
 * slot when it is bad. Sleeps while the image goes over (seconds); the card's refusal is logged (dmesg).
 * 0: written. Errors:
 *   EINVAL      size 0 or above CM_FW_MAX_SIZE, flags or pad not zero; or the card refused the request
 *   EFAULT      the image is not readable
 *   EOPNOTSUPP  the card takes no firmware over the bus (no window: its firmware was not booted from a flash)
 *   EBUSY       another load is in progress on this card, or no slot may be written now (the running slot
 *               is on trial: load again once it confirmed or rolled back)
 *   EFBIG       the image does not fit a flash slot
 *   EBADMSG     the image is corrupt or truncated (structure, payload SHA-256); nothing was written
 *   ENOEXEC     the image is built for another architecture than the card's; nothing was written
 *   ETIMEDOUT   the card did not answer a step in time (5 s; 30 s for the final check and flash write;
 *               after that one the image may still have been written: look at the card's flash or log)
 *   EINTR       a signal arrived; the card drops what it received
 *   EIO         the card stopped or restarted meanwhile, or its flash write failed
 *   ENOMEM, EPERM
 */
struct cm_fw_load {
	__u64 data;                /* user address of the image */
	__u64 size;                /* bytes */
	__u32 flags;               /* zero */
	__u32 pad;                 /* zero */
};
#define CM_FW_MAX_SIZE (64U << 20)

/*
 * CM_IOC_DOORBELL: ring the card's doorbell of queue pair `qp` of this file (after new submissions, when the
 * card asked for one: card_need_wakeup, docs/bus.md "Rings and notifications"). Only when CM_IOC_INFO
 * reports CM_INFO_F_DOORBELL (the emulated card behind QEMU's ivshmem-doorbell: a write of
 * (card peer id << 16) | qp to ivshmem's BAR0 Doorbell register); without it the card polls the rings.
 * The card polls an attached queue pair until its process rings it the first time; from then on (until it is
 * detached or released) the card relies on doorbells: the process must ring whenever card_need_wakeup is set
 * after it produced submissions (libcm does).
 * Errors: EINVAL a queue pair that is not this file's, or flags not zero; EOPNOTSUPP no doorbells;
 * EIO the card stopped or its memory was refused.
 */
struct cm_doorbell {
	__u32 qp;
	__u32 flags;               /* zero */
};

/* CM_IOC_COUNTERS: the driver's counters for this card (since probe). */
struct cm_counters {
	__u64 opens;
	__u64 mmaps;
	__u64 attaches;            /* queue pairs attached */
	__u64 detaches;            /* queue pairs detached by CM_IOC_DETACH */
	__u64 released;            /* queue pairs released when their file closed */
	__u64 irqs;                /* MSI-X interrupts */
	__u64 timer_ticks;         /* polling timer runs */
	__u64 waits;               /* CM_IOC_WAIT calls */
	__u64 bad_ctrl;            /* control blocks refused (probe, reset) */
	__u64 bad_qp;              /* queue pair headers or ring indices refused */
	__u64 bad_ioctls;          /* ioctls refused with EINVAL or ENOTTY */
	__u64 resets;
	__u64 doorbells;           /* doorbells rung (CM_IOC_DOORBELL, and after a release request) */
	__u64 bus_refused;         /* times the driver found the card's memory no longer the validated one
	                            * (magic, state or format changed under it): refused until CM_IOC_RESET */
};

#define CM_IOC_INFO     _IOR(CM_IOC_TYPE, 0x00, struct cm_info)
#define CM_IOC_ATTACH   _IOWR(CM_IOC_TYPE, 0x01, struct cm_attach)
#define CM_IOC_DETACH   _IOW(CM_IOC_TYPE, 0x02, struct cm_detach)
#define CM_IOC_WAIT     _IOWR(CM_IOC_TYPE, 0x03, struct cm_wait)
/*
 * CM_IOC_RESET (CAP_SYS_ADMIN): re-read and re-validate the card's control block, e.g. after the firmware
 * restarted and formatted the memory again. EBUSY while any file has queue pairs attached; EPROTO when the
 * control block is refused (the device then refuses everything but CM_IOC_INFO/COUNTERS/RESET with EIO).
 * (The real card will also get a function-level reset here.)
 */
#define CM_IOC_RESET    _IO(CM_IOC_TYPE, 0x04)
#define CM_IOC_FW_LOAD  _IOW(CM_IOC_TYPE, 0x05, struct cm_fw_load)
#define CM_IOC_COUNTERS _IOR(CM_IOC_TYPE, 0x06, struct cm_counters)
#define CM_IOC_DOORBELL _IOW(CM_IOC_TYPE, 0x07, struct cm_doorbell)

#endif /* _UAPI_LINUX_CM_H */
